using Akka.Actor;
using Akka.Event;
using KvmActors.Runtime.Config;
using KvmActors.Runtime.Vcpu;
using KvmActors.Sdk;

namespace KvmActors.Runtime.Vm;

/// <summary>
/// Owns one KVM virtual machine: creates it, maps its memory, loads the image, creates the device actors
/// and, once every device has started, one pinned vCPU actor per vCPU as children, and supervises them. Ends
/// by stopping the vCPUs (kicking them out of KVM_RUN), releasing every fd and mapping, then telling the owner
/// <see cref="VmEnded"/>.
/// <para>
/// Where to look: this file has the state and the message switch; VmActor.Wiring.cs the set-up (machine,
/// devices, vCPUs in batches); VmActor.Lifecycle.cs how the VM ends (end requests, the halt policy and its
/// flush, children stopping, the end report); VmActor.PauseStop.cs pause, resume and kicks; VmActor.Suspend.cs ACPI S3; VmActor.Guest.cs
/// what the guest causes (failures, unmapped accesses, IRQ lines); VmSupervisorStrategy.cs supervision.
/// </para>
/// </summary>
public sealed partial class VmActor : UntypedActor, IWithTimers
{
    private readonly GuestSpec _spec;
    private readonly IActorRef _owner;
    private readonly VmSettings _settings;
    /// <summary>Build the VM from a snapshot instead of booting it (null: boot).</summary>
    private readonly Snapshot.VmRestore? _restore;
    /// <summary>The KVM VM already created by the caller (kvmactors run creates it while the actor system starts), or null.</summary>
    private readonly Machine? _prebuilt;
    private readonly ILoggingAdapter _log = Context.GetLogger();

    public ITimerScheduler Timers { get; set; } = null!;

    public VmActor(GuestSpec spec, IActorRef owner, VmSettings settings, Snapshot.VmRestore? restore = null, Machine? prebuilt = null)
    {
        _spec = spec;
        _owner = owner;
        _settings = settings;
        _restore = restore;
        _prebuilt = prebuilt;
    }

    /// <summary>
    /// A VM for <paramref name="spec"/> that reports <see cref="VmEnded"/> to <paramref name="owner"/>; with
    /// <paramref name="restore"/>, built from that snapshot and run on from where it was.
    /// </summary>
    /// <remarks>On its own thread (<see cref="KvmActorsConfig.VmDispatcherId"/>): its set-up and release block in KVM.</remarks>
    /// <param name="prebuilt">A machine created from <paramref name="spec"/> (not restored) that this VM takes over and releases.</param>
    public static Props Props(GuestSpec spec, IActorRef owner, VmSettings settings, Snapshot.VmRestore? restore = null, Machine? prebuilt = null) =>
        Akka.Actor.Props.Create(() => new VmActor(spec, owner, settings, restore, prebuilt)).WithDispatcher(KvmActorsConfig.VmDispatcherId);

    protected override SupervisorStrategy SupervisorStrategy() =>
        new VmSupervisorStrategy(
            child => _vcpuActors.ContainsKey(child) ? _spec.VcpuSupervision : _spec.DeviceSupervision,
            (child, cause, restarted, outcome) =>
            {
                _failures.Add(new ActorFailure(child.Path.Name, cause.GetType().Name, cause.Message, restarted, DateTimeOffset.UtcNow));
                if (!restarted) _stopCause[child.Path.Name] = $"{outcome}; last exception {cause.GetType().Name}: {cause.Message}";
                // Escalation: the VM ends first (every vCPU out of KVM_RUN and stopped), then fails: see Finish.
                if (outcome == "escalated") _escalated ??= new VmChildFailedException(child.Path.Name, cause);
            });

    protected override void OnReceive(object message)
    {
        switch (message)
        {
            // set-up (VmActor.Wiring.cs)
            case ActorIdentity { MessageId: DeviceStartedId } id:
                DeviceStarted(id.Subject);
                break;
            case AwaitVmStarted:
                AnswerStartedIfReady(Sender);
                break;
            case CreateVcpus batch:
                CreateVcpuBatch(batch.From);
                break;
            case VcpuStarted s:
                _vcpuNativeThreads[s.VcpuId] = s.NativeThreadId;
                if (s.ThreadExited is { } exited) _vcpuThreadExits[s.VcpuId] = (exited, s.NativeThreadId);
                if (_end is not null) Kick(s.VcpuId);
                break;

            // the end (VmActor.Lifecycle.cs)
            case VcpuHalted h:
                OnVcpuHalted(h.VcpuId);
                break;
            case ActorIdentity { MessageId: HaltFlushId } id:
                HaltFlushAnswered(id.Subject);
                break;
            case HaltFlushTimedOut:
                EndPendingHalt();
                break;
            case RequestVmEnd r:
                EndVm(r.Reason, r.Detail, r.ExitStatus, null);
                break;
            case ChildStartFailed c:
                EndVm(VmEndReason.Fault, $"{c.Actor}: {c.Error.Message}", c.ExitStatus, null);
                break;
            case StopVm s:
                EndVm(VmEndReason.StoppedOnRequest, s.Why, 0, null);
                break;
            case VcpuStopped stopped:
                _summaries[stopped.Summary.VcpuId] = stopped.Summary;
                _vcpuNativeThreads.Remove(stopped.Summary.VcpuId);
                break;
            case Terminated t:
                OnChildTerminated(t.ActorRef);
                break;
            case StopTimedOut:
                _log.Warning("VM '{0}': vCPUs {1} did not acknowledge the stop in {2}; stopping the VM actor (the VM is released once they leave KVM_RUN)",
                    _spec.Name, string.Join(",", _vcpuNativeThreads.Keys), _settings.StopTimeout);
                Context.Stop(Self);
                break;

            // what the guest causes (VmActor.Guest.cs)
            case VcpuGuestFailed f:
                OnGuestFailed(f.Failure);
                break;
            case UnmappedAccess u:
                OnUnmappedAccess(u);
                break;
            case SetIrqLine irq:
                OnSetIrqLine(irq);
                break;
            case PciBarsMapped bars:
                OnPciBarsMapped(bars); // VmActor.Pci.cs
                break;

            // ACPI S3 (VmActor.Suspend.cs)
            case RequestVmSuspend suspend:
                OnSuspendRequested(suspend);
                break;
            case WakeEvent wake:
                OnWakeEvent(wake);
                break;
            case RequestVmResume resume:
                OnResumeRequested(resume);
                break;

            // pause, resume, kicks (VmActor.PauseStop.cs)
            case PauseVm:
                Pause();
                break;
            case VcpuPaused p:
                _pausedVcpus.Add(p.VcpuId);
                AnswerPauseIfComplete();
                break;
            case ResumeVm:
                Resume();
                break;
            case PauseKick:
                KickUnpaused();
                break;
            case KickAgain:
                foreach (var id in _vcpuNativeThreads.Keys) Kick(id);
                break;
            // snapshot (VmActor.Snapshot.cs)
            case SnapshotVm snap:
                OnSnapshotVm(snap);
                break;
            case VmPaused:
                if (!SuspendPaused()) SnapshotPaused(); // our own pause, asked for by a suspend or a snapshot
                break;
            case VcpuExitCompleted done:
                OnVcpuExitCompleted(done);
                break;
            case DeviceStateSaved saved:
                OnDeviceStateSaved(saved);
                break;
            case DeviceStateRestored restored:
                OnDeviceStateRestored(restored);
                break;
            case SnapshotTimedOut:
                FailSnapshot($"the vCPUs and devices did not hand over their state within {_settings.Capture} (kvmactors.vm.capture-timeout)");
                break;

            // live migration, source side (VmActor.Migration.cs)
            case BeginMigration or ReadMigrationPages or NextMigrationRound or FinishMigration or EndMigration:
                OnMigrationMessage(message);
                break;

            case GetVmStatus:
                // VcpuProgress is the VM's own record of each vCPU (kept across restarts); its counters are written by
                // the vCPU threads, so they are read here with Volatile.Read: a figure for a status call, not a fence.
                Sender.Tell(new VmStatus(_progress.OrderBy(p => p.Key).Select(p => new VcpuLiveStatus(p.Key,
                    Volatile.Read(ref p.Value.Exits), _vcpuNativeThreads.GetValueOrDefault(p.Key), $"vcpu-{p.Key}")).ToList()));
                break;
            default:
                if (!OnDebugMessage(message)) Unhandled(message);
                break;
        }
    }
}

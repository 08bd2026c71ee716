using Akka.Actor;
using Akka.Event;
using KvmActors.Runtime.Bus;
using KvmActors.Runtime.Config;
using KvmActors.Runtime.Devices;
using KvmActors.Runtime.Kvm;
using KvmActors.Runtime.Memory;
using KvmActors.Runtime.Vm;
using KvmActors.Sdk;

namespace KvmActors.Runtime.Vcpu;

/// <summary>What a vCPU actor needs; owned by the VM, so a restarted actor gets the same vCPU and progress back.</summary>
public sealed record VcpuSetup(
    KvmVcpu Vcpu,
    int VcpuCount,
    PortBus Ports,
    MmioBus Mmio,
    GuestMemory Memory,
    UnmappedAccessPolicy Unmapped,
    VmSettings Settings,
    VcpuProgress Progress,
    VcpuFaults? Faults = null,
    Action<int>? IoapicEoi = null);

/// <summary>
/// One vCPU. Runs on its own pinned thread and loops on KVM_RUN by sending itself <see cref="RunGuest"/>,
/// so its mailbox is served between two exits. Each exit is handled by its <see cref="VcpuExitHandler"/>
/// (routing to devices: VcpuExitHandler.cs); this actor runs the loop (VcpuActor.Loop.cs), waits for reads
/// (VcpuActor.Reads.cs), injects configured faults (VcpuActor.Faults.cs) and reports HLT, guest failures and
/// its summary to the VM (VcpuActor.Reports.cs). This file: set-up, restart and the behaviours.
/// The guest's state lives in KVM behind the vCPU fd and the progress of the exit being handled in
/// <see cref="VcpuProgress"/>, not in this object: a restarted actor resumes exactly where this one was.
/// </summary>
public sealed partial class VcpuActor : UntypedActor, IVcpuExitActions
{
    private readonly VcpuSetup _setup;
    private readonly KvmVcpu _vcpu;
    private readonly VcpuProgress _progress;
    private readonly VcpuExitHandler _exits;
    private readonly int _id;
    private readonly ILoggingAdapter _log = Context.GetLogger();

    private int _managedThreadId;
    private int _nativeThreadId;
    private string _threadName = "";

    public VcpuActor(VcpuSetup setup)
    {
        _setup = setup;
        _vcpu = setup.Vcpu;
        _progress = setup.Progress;
        _id = setup.Vcpu.Id;
        _maxExitsPerMessage = Math.Max(1, setup.Settings.ExitsPerMessage);
        _exits = new VcpuExitHandler(_id, setup.VcpuCount, _progress.Ports ?? setup.Ports, _progress.Mmio ?? setup.Mmio, setup.Memory.IsReadOnly, setup.Unmapped,
            setup.Settings.ReadSnapshots, _progress, this, setup.Settings.ReadSnapshotWait, setup.IoapicEoi);
    }

    public static Props Props(VcpuSetup setup) =>
        Akka.Actor.Props.Create(() => new VcpuActor(setup)).WithDispatcher(KvmActorsConfig.VcpuDispatcherId);

    protected override void PreStart()
    {
        if (Vm.CreateTrace.Enabled) Vm.CreateTrace.Mark(Context.Parent.Path.Name, "vcpu-thread");
        _threadName = $"vcpu-{_id}";
        Thread.CurrentThread.Name = _threadName;
        _managedThreadId = Environment.CurrentManagedThreadId;
        _progress.ThreadsSeen.Add(_managedThreadId);
        _nativeThreadId = VcpuKick.CurrentNativeThreadId();
        VcpuKick.LowerThreadPriority(_setup.Settings.VcpuThreadNice);
        VcpuKick.PrepareThread(_vcpu, _setup.Settings.KickSignal);
        DeviceDispatcher.RunDevicesOnThisThread(); // idle devices handle this vCPU's accesses on this thread
        Context.Parent.Tell(new VcpuStarted(_id, _nativeThreadId, _threadName, Dispatch.OwnThreadDispatcher.CurrentThreadExit));

        if (_progress.Parked) Become(Parked);
        else if (_progress.ExitPending) ResumePendingExit();
        else Self.Tell(RunGuest.Instance);
    }

    /// <summary>The actor's last turn on its thread: the rest of the thread's end is the VM's end (see VmActor.PostStop).</summary>
    protected override void PostStop()
    {
        if (_setup.Settings.VcpuThreadNice > 0) VcpuKick.TryRestoreThreadPriority();
        base.PostStop();
    }

    protected override void PostRestart(Exception reason)
    {
        _progress.Restarts++;
        _log.Warning("vcpu {0} restarted after {1}: {2}; resuming the guest", _id, reason.GetType().Name, reason.Message);
        base.PostRestart(reason);
    }

    protected override void OnReceive(object message)
    {
        NoteThread();
        switch (message)
        {
            case RunGuest:
                if (_progress.Paused) _progress.RunDeferred = true;
                else RunLoop();
                break;
            default:
                Common(message);
                break;
        }
    }

    /// <summary>After HLT or a guest failure: no more KVM_RUN; only stop (or pause bookkeeping) from here.</summary>
    private void Parked(object message)
    {
        NoteThread();
        if (message is not RunGuest) Common(message);
    }

    /// <summary>Messages every behaviour handles the same way.</summary>
    private void Common(object message)
    {
        switch (message)
        {
            case StopVcpu stop:
                StopWith(stop.Why);
                break;
            case PauseVcpu:
                _progress.Paused = true;
                Sender.Tell(new VcpuPaused(_id));
                break;
            case ResumeVcpu:
                if (Vm.CreateTrace.Enabled) Vm.CreateTrace.Mark(Context.Parent.Path.Name, "vcpu-resumed");
                _progress.Paused = false;
                if (_progress.RunDeferred)
                {
                    _progress.RunDeferred = false;
                    Self.Tell(RunGuest.Instance);
                }
                break;
            case CompleteVcpuExit:
                OnCompleteExit(Sender);
                break;
            case RoutingChanged routing:
                _progress.Ports = routing.Ports;
                _progress.Mmio = routing.Mmio;
                _exits.Reroute(routing.Ports, routing.Mmio);
                break;
            case ResetVcpu reset:
                OnResetVcpu(reset);
                break;
            case ReadCompleted:
                break; // a late answer to a read nobody waits for any more
            default:
                if (!HandleDebug(message)) Unhandled(message);
                break;
        }
    }

    private void NoteThread()
    {
        var t = Environment.CurrentManagedThreadId;
        if (t != _managedThreadId) _progress.ThreadsSeen.Add(t);
    }

    // Self once: ActorBase.Self looks the cell up through a thread-static on every call, and this is every exit's path.
    private IActorRef? _self;

    void IVcpuExitActions.Send(IActorRef device, object access) => device.Tell(access, _self ??= Self);

    void IVcpuExitActions.ReportUnmapped(UnmappedAccess access) => Context.Parent.Tell(access);
}

using Akka.Actor;
using Akka.Event;
using KvmActors.Runtime.Vcpu;
using KvmActors.Sdk;

namespace KvmActors.Runtime.Vm;

// How the VM ends: the first end request wins (EndVm); every vCPU is told to stop and kicked until it has;
// once the last vCPU actor has stopped the VM actor stops (or fails, for an escalated child failure) and
// PostStop releases the machine and tells the owner VmEnded. A halt-policy end first waits for every device
// to have handled what the guest sent before it halted (the halt flush).
public sealed partial class VmActor
{
    private const string HaltFlushId = "halt-flush";

    private HaltPolicy? _haltPolicy;
    // How the VM ends: set once, by the first end request.
    private (VmEndReason Reason, string Detail, int Status, GuestFailureInfo? Failure)? _end;
    // Every child failure, and for children stopped by policy why, so the end names the actor and its cause.
    private readonly List<ActorFailure> _failures = new();
    private readonly Dictionary<string, string> _stopCause = new();
    private readonly Dictionary<int, VcpuSummary> _summaries = new();
    // A halt-policy end waiting for every device to have handled what the guest did before it halted.
    private (RequestVmEnd Request, HashSet<IActorRef> Waiting)? _haltPending;
    private bool _restarted;
    private VmChildFailedException? _escalated;

    private void OnVcpuHalted(int vcpuId)
    {
        if (_haltPolicy?.Halted(vcpuId) is not { } request || _end is not null || _haltPending is not null) return;
        _log.Debug("vcpu {0} halted ({1}/{2}): the halt policy ends the VM", vcpuId, _haltPolicy.HaltedCount, _spec.Machine.VcpuCount);
        // A device may still hold an end request of its own that the guest caused before it halted (a debug-exit
        // OUT then HLT): ask every device for its identity first. A device answers only after the messages
        // already in its mailbox, so any such request reaches us before its answer.
        if (_devices.Count == 0)
        {
            EndVm(request.Reason, request.Detail, request.ExitStatus, null);
            return;
        }
        _haltPending = (request, _devices.Keys.ToHashSet());
        foreach (var d in _devices.Keys) d.Tell(new Identify(HaltFlushId));
        Timers.StartSingleTimer(HaltFlushId, HaltFlushTimedOut.Instance, _settings.StopTimeout);
    }

    private void HaltFlushAnswered(IActorRef? device)
    {
        if (_haltPending is { } pending && device is not null && pending.Waiting.Remove(device) && pending.Waiting.Count == 0)
            EndPendingHalt();
    }

    private void EndPendingHalt()
    {
        Timers.Cancel(HaltFlushId);
        if (_haltPending is { } pending) EndVm(pending.Request.Reason, pending.Request.Detail, pending.Request.ExitStatus, null);
        _haltPending = null;
    }

    private void EndVm(VmEndReason reason, string detail, int status, GuestFailureInfo? failure)
    {
        if (_end is not null) return;
        _end = (reason, detail, status, failure);
        TellDebuggerEnding(reason, status);
        FailSnapshot($"the VM is ending: {reason} ({detail})");
        _log.Info("VM '{0}' ending: {1} ({2})", _spec.Name, reason, detail);
        if (_vcpuActors.Count == 0)
        {
            Finish();
            return;
        }
        foreach (var (actor, id) in _vcpuActors)
        {
            actor.Tell(new StopVcpu(detail));
            Kick(id);
        }
        // A kick can race a vCPU entering KVM_RUN; repeat until every vCPU has acknowledged.
        Timers.StartPeriodicTimer("kick", KickAgain.Instance, _settings.KickInterval);
        Timers.StartSingleTimer("stop-timeout", StopTimedOut.Instance, _settings.StopTimeout);
    }

    private void OnChildTerminated(IActorRef child)
    {
        if (_vcpuActors.Remove(child, out var vcpuId))
        {
            _vcpuNativeThreads.Remove(vcpuId);
            if (_end is null)
                EndVm(VmEndReason.Fault, $"vcpu-{vcpuId} stopped: {Cause(child)}", 1, null);
        }
        else if (_devices.Remove(child, out var name))
        {
            _devicesStarting.Remove(child);
            if (_end is null)
                EndVm(VmEndReason.Fault, $"device '{name}' stopped: {Cause(child)}", 1, null);
        }
        if (_end is not null && _vcpuActors.Count == 0)
            Finish();
    }

    private string Cause(IActorRef child) =>
        _stopCause.TryGetValue(child.Path.Name, out var why) ? why : "stopped without a failure";

    /// <summary>
    /// Every vCPU has stopped: stop, or, where a child's failure was escalated, fail now so the VM actor's
    /// own supervisor decides (no vCPU thread is in KVM_RUN any more when the VM is released).
    /// </summary>
    private void Finish()
    {
        if (_escalated is { } e) throw e;
        Context.Stop(Self);
    }

    /// <summary>
    /// A VM is not re-created by a restart (its guest would start over): when its supervisor restarts the
    /// VM actor (after an escalated failure), the old incarnation has already released the VM and told the
    /// owner, and the new one just stops.
    /// </summary>
    protected override void PostRestart(Exception reason)
    {
        _restarted = true;
        Context.Stop(Self);
    }

    protected override void PostStop()
    {
        // Children are stopped by now, and their threads end right after their last turn: wait for them, so no
        // vCPU thread outlives its VM. Then read what the report asks of guest memory and release the kernel
        // objects in reverse order of creation. This actor's own thread blocks here, not the shared pool's.
        WaitForVcpuThreads();
        var dumps = ReportedMemory();
        _machine?.Dispose();
        if (_restarted) return; // the incarnation before this one released the VM and told the owner
        var end = _end ?? (VmEndReason.Fault, "the VM actor stopped unexpectedly", 1, null);
        var summaries = _summaries.Values.OrderBy(s => s.VcpuId).ToList();
        LogUnmappedTotal(summaries);
        _owner.Tell(new VmEnded(_spec.Name, end.Reason, end.Detail, end.Status, end.Failure, summaries, _failures.ToList()) { MemoryDumps = dumps });
    }

    /// <summary>
    /// Until every vCPU thread has ended, as the kernel sees it: the managed thread's end first, then its task
    /// leaving /proc/self/task (the runtime's own thread teardown comes after the managed end; on a loaded host it
    /// was seen to take tens of ms). Bounded by the stop timeout: a thread still stuck past it ends with the process.
    /// </summary>
    private void WaitForVcpuThreads()
    {
        if (_vcpuThreadExits.Count == 0) return;
        var deadline = DateTime.UtcNow + _settings.StopTimeout;
        var ended = Task.WaitAll(_vcpuThreadExits.Values.Select(t => t.Exited).ToArray(), _settings.StopTimeout);
        foreach (var (_, tid) in _vcpuThreadExits.Values)
            while (ended && tid > 0 && Directory.Exists($"/proc/self/task/{tid}"))
            {
                if (DateTime.UtcNow > deadline) ended = false;
                else Thread.Sleep(1);
            }
        if (!ended)
            _log.Warning("VM '{0}': vCPU thread(s) still running {1} after the vCPU actors stopped", _spec.Name, _settings.StopTimeout);
        _vcpuThreadExits.Clear();
    }

    private sealed class KickAgain { public static readonly KickAgain Instance = new(); }
    private sealed class HaltFlushTimedOut { public static readonly HaltFlushTimedOut Instance = new(); }
    private sealed class StopTimedOut { public static readonly StopTimedOut Instance = new(); }
}

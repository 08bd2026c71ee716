using Akka.Actor;
using KvmActors.Runtime.Debug;
using KvmActors.Runtime.Vcpu;
using KvmActors.Sdk;

namespace KvmActors.Runtime.Vm;

// The gdb stub (guest.gdb): a DebuggerActor child, the vCPUs' debug stops forwarded to it, its requests
// forwarded to the vCPU they name, and resuming only some vCPUs (gdb's per-thread vCont).
public sealed partial class VmActor
{
    private IActorRef? _debugger;

    /// <summary>Before any vCPU exists, so a bad address ends the VM before the guest runs.</summary>
    private void StartDebugger()
    {
        if (_spec.Gdb is not { } gdb) return;
        _debugger = Context.ActorOf(DebuggerActor.Props(gdb, Self, _spec.Machine.VcpuCount, _spec.Name), "debugger");
    }

    /// <summary>With <c>guest.gdb.wait</c>, a vCPU starts paused: gdb's first continue runs it.</summary>
    private bool StartsPaused => _spec.Gdb is { Wait: true };

    private bool OnDebugMessage(object message)
    {
        switch (message)
        {
            case VcpuDebugStopped s when _debugger is null:
                // Only a debugger turns debug exits on; without one, this is KVM (or the guest) misbehaving.
                EndVm(VmEndReason.GuestFailure, $"KVM_EXIT_DEBUG on vcpu {s.VcpuId} with no debugger (pc 0x{s.Pc:x}, dr6 0x{s.Dr6:x})", 1, null);
                return true;
            case VcpuDebugStopped s:
                _debugger.Tell(s);
                return true;
            case DebugVcpuRequest r:
                var vcpu = _vcpuActors.FirstOrDefault(kv => kv.Value == r.VcpuId).Key;
                if (vcpu is null) Sender.Tell(new DebugDone($"no vCPU {r.VcpuId} (ended, or not started yet)"));
                else vcpu.Forward(r.Request);
                return true;
            case ResumeVcpus r:
                foreach (var (actor, id) in _vcpuActors)
                {
                    if (!r.VcpuIds.Contains(id)) continue;
                    _pausedVcpus.Remove(id);
                    actor.Tell(new ResumeVcpu());
                }
                Sender.Tell(new VmResumed(_spec.Name));
                return true;
            default:
                return false;
        }
    }

    private void TellDebuggerEnding(VmEndReason reason, int status) =>
        _debugger?.Tell(new VmEndingForDebugger(reason, status));
}

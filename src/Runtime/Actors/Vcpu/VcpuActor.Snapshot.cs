using Akka.Actor;
using KvmActors.Runtime.Kvm;

namespace KvmActors.Runtime.Vcpu;

// Getting a paused vCPU to a point where its state can be read (snapshot, migration): KVM finishes an I/O or
// MMIO exit only when userspace re-enters KVM_RUN (KVM API, "kvm_run"), so a vCPU whose last exit was handled
// in userspace still has the instruction half done in the kernel. Re-entering with immediate_exit set finishes
// it and returns at once (EINTR) without running the guest. A read still out (a slow device) is awaited first,
// and the rest of a rep-string IN with it: the VM's state is read only between two whole instructions.
public sealed partial class VcpuActor
{
    private IActorRef? _completeRequester;

    /// <summary>From <see cref="Common"/>: in <see cref="AwaitingRead"/> the answer comes first.</summary>
    private void OnCompleteExit(IActorRef requester)
    {
        if (_awaitingRead) _completeRequester = requester;
        else CompleteExitFor(requester);
    }

    /// <summary>After a read completed: answer a completion request that waited for it.</summary>
    private void CompleteExitIfRequested()
    {
        if (_awaitingRead || _completeRequester is not { } requester) return;
        _completeRequester = null;
        CompleteExitFor(requester);
    }

    private void CompleteExitFor(IActorRef requester)
    {
        while (true)
        {
            bool completed;
            try
            {
                completed = _vcpu.CompletePendingExit();
            }
            catch (KvmException e)
            {
                // KVM could not finish the exit: the state read now would not be at an instruction boundary,
                // so the snapshot must not be taken.
                requester.Tell(new VcpuExitCompleted(_id, _progress.Halted, $"KVM_RUN (immediate exit) failed: {e.Message}"));
                return;
            }
            finally
            {
                VcpuKick.Consume(_vcpu, _setup.Settings.KickSignal);
            }
            if (completed) break;
            // Finishing the exit ran on into the next one (the rest of a rep-string I/O emulated in the kernel):
            // handle it as any exit, then finish that one too.
            var exit = _vcpu.Exit;
            _exits.Begin(exit.Reason);
            var result = _exits.Handle(exit);
            if (result.Outcome == ExitOutcome.Done) continue;
            if (result.Outcome == ExitOutcome.AwaitingRead)
            {
                _completeRequester = requester; // answered once the read is in (CompleteExitIfRequested)
                Apply(result);
                return;
            }
            Apply(result); // halted, failed or stopped for the debugger: at a boundary, as it is
            break;
        }
        requester.Tell(new VcpuExitCompleted(_id, _progress.Halted, null));
    }
}

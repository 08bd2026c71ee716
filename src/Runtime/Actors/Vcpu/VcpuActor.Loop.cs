using Akka.Actor;
using KvmActors.Runtime.Kvm;

namespace KvmActors.Runtime.Vcpu;

// The exit loop: one RunGuest message runs the guest again and again as long as each exit is finished on the
// spot and nothing waits in the mailbox (checked after every exit, so a stop, pause or answer is served at the
// next exit, as with one message per exit). At most kvmactors.vcpu.exits-per-message exits per message, so
// system messages (which HasMessages does not see) wait a bounded time; a kick ends the loop at once.
// kvmactors bench: one self-message per exit cost ~0.3 µs of a ~8 µs exit (README, "Design: the exit path").
public sealed partial class VcpuActor
{
    private readonly int _maxExitsPerMessage;
    private bool _inExitLoop;   // RunOnce is being called from RunLoop
    private bool _runAgain;     // the exit just handled is finished: the loop may enter KVM_RUN again
    private ActorCell? _cell;
    private ExitTiming.Probe _timing; // kvmactors bench only (ExitTiming.Enabled)

    private void RunLoop()
    {
        _cell ??= (ActorCell)Context;
        _inExitLoop = true;
        try
        {
            var budget = _maxExitsPerMessage;
            do
            {
                _runAgain = false;
                RunOnce();
            } while (_runAgain && --budget > 0 && !_cell.HasMessages);
        }
        finally
        {
            _inExitLoop = false;
            _timing.Flush();
        }
        if (_runAgain) Self.Tell(RunGuest.Instance);
    }

    private void RunOnce()
    {
        InjectKvmRunFault();
        var timed = ExitTiming.Enabled;
        if (timed) _timing.BeforeRun();
        var err = _vcpu.Run();
        if (timed) _timing.AfterRun();
        if (err != 0)
        {
            // EINTR/EAGAIN: a kick (or a signal) got us out; the mailbox is served before the next run.
            VcpuKick.Consume(_vcpu, _setup.Settings.KickSignal);
            _progress.Count(KvmExitReason.Intr);
            Self.Tell(RunGuest.Instance);
            return;
        }
        var exit = _vcpu.Exit;
        _exits.Begin(exit.Reason);
        InjectHandlingFault(exit.Reason);
        Apply(_exits.Handle(exit));
    }

    /// <summary>A restarted actor finishes the exit its predecessor was handling.</summary>
    private void ResumePendingExit() => Apply(_exits.Resume(_vcpu.Exit));

    /// <summary>Do what the handled exit asks of the actor.</summary>
    private void Apply(ExitResult result)
    {
        switch (result.Outcome)
        {
            case ExitOutcome.Done:
                if (_inExitLoop) _runAgain = true;
                else Self.Tell(RunGuest.Instance);
                break;
            case ExitOutcome.AwaitingRead:
                _awaitingRead = true;
                Become(AwaitingRead);
                break;
            case ExitOutcome.Halted:
                _progress.Halted = true;
                Park();
                Context.Parent.Tell(new VcpuHalted(_id));
                break;
            case ExitOutcome.Failed:
                GuestFailed(result.FailedExit, result.Explanation!);
                break;
            case ExitOutcome.DebugStop:
                DebugStopped(result.Dr6);
                break;
        }
    }

    private void Park()
    {
        _progress.Parked = true;
        Become(Parked);
    }
}

using KvmActors.Runtime.Kvm;
using Akka.Actor;
using Akka.Event;
using KvmActors.Runtime.Vcpu;

namespace KvmActors.Runtime.Vm;

// Pause and resume: every vCPU is told and kicked out of KVM_RUN, and re-kicked until it has acknowledged
// (a kick can race a vCPU entering KVM_RUN), as a stop is.
public sealed partial class VmActor
{
    // Who asked for a pause, and which vCPUs have acknowledged it.
    private readonly List<IActorRef> _pauseRequesters = new();
    private readonly HashSet<int> _pausedVcpus = new();

    private void Pause()
    {
        _pausedByRequest = true;
        PauseFor(Sender);
    }

    private void PauseFor(IActorRef requester)
    {
        _pauseRequesters.Add(requester);
        if (_end is not null)
        {
            // Ending: no vCPU runs the guest any more.
            AnswerPause();
            return;
        }
        foreach (var (actor, id) in _vcpuActors)
        {
            actor.Tell(new PauseVcpu());
            Kick(id);
        }
        Timers.StartPeriodicTimer("pause-kick", PauseKick.Instance, _settings.KickInterval);
        AnswerPauseIfComplete();
    }

    private void KickUnpaused()
    {
        foreach (var id in _vcpuActors.Values)
            if (!_pausedVcpus.Contains(id)) Kick(id);
    }

    private void AnswerPauseIfComplete()
    {
        if (_pauseRequesters.Count == 0 || _vcpuActors.Values.Any(id => !_pausedVcpus.Contains(id))) return;
        AnswerPause();
    }

    private void AnswerPause()
    {
        Timers.Cancel("pause-kick");
        foreach (var r in _pauseRequesters) r.Tell(new VmPaused(_spec.Name));
        _pauseRequesters.Clear();
    }

    private void Resume()
    {
        _pausedByRequest = false;
        // A snapshot in progress resumes the guest itself when it is done (or keeps it paused, as asked).
        if (_snapshot is null) ResumeVcpus();
        Sender.Tell(new VmResumed(_spec.Name));
    }

    private void ResumeVcpus()
    {
        _pausedVcpus.Clear();
        Timers.Cancel("pause-kick");
        foreach (var actor in _vcpuActors.Keys) actor.Tell(new ResumeVcpu());
    }

    private void Kick(int vcpuId)
    {
        if (_machine is not { } machine || (uint)vcpuId >= (uint)machine.Vcpus.Count) return;
        VcpuKick.Kick(machine.Vcpus[vcpuId], _vcpuNativeThreads.GetValueOrDefault(vcpuId), _settings.KickSignal);
    }

    private sealed class PauseKick { public static readonly PauseKick Instance = new(); }
}

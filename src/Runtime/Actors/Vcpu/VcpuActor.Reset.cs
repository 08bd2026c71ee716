using Akka.Event;
using KvmActors.Runtime.Kvm;
using KvmActors.Runtime.Vm;

namespace KvmActors.Runtime.Vcpu;

// The reset on resuming from S3: what the vCPU was doing before the suspend is over. KVM still holds the last exit
// (the OUT that suspended, or another vCPU's access) until the next KVM_RUN, so it is finished with immediate_exit
// first, as for a snapshot; a read still out is abandoned (its late answer is dropped by Common).
public sealed partial class VcpuActor
{
    private void OnResetVcpu(ResetVcpu reset)
    {
        if (_awaitingRead)
        {
            _awaitingRead = false;
            _progress.ReadInFlight = false;
            Become(OnReceive);
        }
        try
        {
            _vcpu.CompletePendingExit(); // a rep-string I/O that ran into its next item is dropped with the rest
        }
        catch (KvmException e)
        {
            _log.Warning("vcpu {0}: finishing the last exit before the reset failed: {1}", _id, e.Message);
        }
        finally
        {
            VcpuKick.Consume(_vcpu, _setup.Settings.KickSignal);
        }
        _progress.ExitPending = false;
        _progress.ItemsDone = 0;
        try
        {
            if (reset.RealModeEntry is { } entry) CpuReset.ToRealMode(_vcpu, entry);
            else CpuReset.ToWaitForSipi(_vcpu);
        }
        catch (KvmActorsException e)
        {
            GuestFailed(KvmExitReason.Unknown, $"the reset for resuming from S3 failed: {e.Message}");
            return;
        }
        if (_progress.Parked && !_progress.Halted) return; // a failed vCPU stays failed
        _progress.Parked = _progress.Halted = false;
        Become(OnReceive);
        _progress.RunDeferred = true; // runs again on ResumeVcpu
    }
}

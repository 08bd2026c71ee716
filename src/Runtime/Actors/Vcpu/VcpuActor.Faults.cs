using KvmActors.Runtime.Kvm;
using KvmActors.Sdk;

namespace KvmActors.Runtime.Vcpu;

// Fault injection (guest.faults.vcpus): a failing KVM_RUN, or an exception while an exit is being handled,
// so supervision and exact resume can be tested on real guests. Off unless the config asks.
public sealed partial class VcpuActor
{
    private void InjectKvmRunFault()
    {
        if (_setup.Faults is { KvmRunErrno: > 0 } f && f.Fires(_progress.Exits + 1, f.KvmRunErrnoAfterExits)
            && _progress.KvmRunFaultFiredAt != _progress.Exits)
        {
            _progress.KvmRunFaultFiredAt = _progress.Exits;
            throw new KvmException("KVM_RUN", f.KvmRunErrno, $"vcpu {_id} (injected fault)");
        }
    }

    private void InjectHandlingFault(KvmExitReason reason)
    {
        if (_setup.Faults is { ThrowAfterExits: > 0 } tf && tf.Fires(_progress.Exits, tf.ThrowAfterExits))
            throw new InjectedFaultException($"injected fault: vcpu {_id} failed handling exit {_progress.Exits} ({reason})");
    }
}

using Akka.Actor;
using Akka.Event;
using KvmActors.Runtime.Kvm;
using KvmActors.Runtime.Vcpu;
using KvmActors.Sdk;

namespace KvmActors.Runtime.Vm;

// What the guest causes that the VM handles: a guest failure ends the VM; unmapped accesses are logged once per
// page (bounded: see UnmappedAccessLog, so a guest walking all unmapped MMIO writes a bounded number of lines);
// IRQ lines go to KVM's irqchip.
public sealed partial class VmActor
{
    /// <summary>Unmapped pages/blocks the VM logs (over all its vCPUs) before it says further ones are not logged.</summary>
    private const int UnmappedLogCapacity = 64;

    private readonly UnmappedAccessLog _unmappedLogged = new(UnmappedLogCapacity);
    private bool _unmappedLogFullSaid;

    private void OnGuestFailed(GuestFailureInfo failure)
    {
        _log.Error("guest failure on vcpu {0}: {1}: {2}", failure.VcpuId, failure.ExitReason, failure.Explanation);
        EndVm(VmEndReason.GuestFailure, $"{failure.ExitReason} on vcpu {failure.VcpuId}: {failure.Explanation}", 1, failure);
    }

    private void OnUnmappedAccess(UnmappedAccess u)
    {
        var outcome = u.LogFull ? UnmappedAccessLog.Outcome.Full : _unmappedLogged.Record(u.Space, u.Address);
        switch (outcome)
        {
            case UnmappedAccessLog.Outcome.NewEntry:
                var page = UnmappedAccessLog.PageOf(u.Space, u.Address);
                var where = u.Space == AddressSpace.Port ? $"port 0x{u.Address:x}" : $"MMIO address 0x{u.Address:x}";
                var block = u.Space == AddressSpace.Port ? $"port block 0x{page:x}" : $"page 0x{page:x}";
                _log.Warning("vcpu {0}: {1} of unmapped {2} ({3} bytes): {4}; further accesses to {5} are not logged",
                    u.VcpuId, u.IsWrite ? "write" : "read", where, u.Size, u.IsWrite ? "dropped" : "reads all ones", block);
                break;
            case UnmappedAccessLog.Outcome.Full when !_unmappedLogFullSaid:
                _unmappedLogFullSaid = true;
                _log.Warning("vcpu {0}: unmapped accesses to more than {1} pages or port blocks; further unmapped accesses are not logged (counted in the summary)",
                    u.VcpuId, UnmappedLogCapacity);
                break;
        }
    }

    private void LogUnmappedTotal(IReadOnlyList<VcpuSummary> summaries)
    {
        var total = summaries.Sum(s => s.UnmappedAccesses);
        if (total > 0) _log.Info("VM '{0}': {1} unmapped access(es) in all", _spec.Name, total);
    }

    private void OnSetIrqLine(SetIrqLine irq)
    {
        bool driven;
        try { driven = _machine?.SetIrqLine(irq.Line, irq.Level) == true; }
        catch (KvmException e)
        {
            // A line KVM refuses (e.g. out of the irqchip's range) is the device's config problem,
            // not a reason to fail (and so restart) the VM actor itself.
            EndVm(VmEndReason.Fault, $"device '{irq.DeviceName}' drove IRQ {irq.Line}: {e.Message}", 1, null);
            return;
        }
        if (!driven)
            _log.Debug("device {0} set IRQ {1} {2} (no irqchip: no-op)", irq.DeviceName, irq.Line, irq.Level ? "high" : "low");
    }
}

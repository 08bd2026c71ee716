using Akka.Event;
using KvmActors.Runtime.Kvm;

namespace KvmActors.Runtime.Vm;

// What the end report reads of the guest before the VM is released (run --report-memory).
public sealed partial class VmActor
{
    /// <summary>
    /// The ranges the spec asks for, read once every vCPU has stopped. Each lies within one region (checked when the
    /// CLI bound them); a read that fails anyway is left out with a warning rather than losing the report.
    /// </summary>
    private IReadOnlyList<MemoryDump> ReportedMemory()
    {
        if (_machine is not { } machine || _spec.ReportMemory.Count == 0) return [];
        var dumps = new List<MemoryDump>();
        foreach (var range in _spec.ReportMemory)
        {
            try
            {
                var bytes = new byte[range.Length];
                machine.Memory.Read(range.Address, bytes);
                dumps.Add(new MemoryDump(range.Address, bytes));
            }
            catch (Exception e) when (e is ArgumentException or KvmException or InvalidOperationException)
            {
                _log.Warning("report memory {0} not read: {1}", range, e.Message);
            }
        }
        return dumps;
    }
}

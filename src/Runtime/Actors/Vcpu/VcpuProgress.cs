using KvmActors.Runtime.Kvm;

namespace KvmActors.Runtime.Vcpu;

/// <summary>
/// What one vCPU has done, kept by the VM and handed to every incarnation of its vCPU actor, so a
/// restarted actor resumes exactly: an exit that was being handled when the actor failed is finished
/// (once: items already delivered are not sent again), a read in flight is awaited, counters go on.
/// Only that vCPU's actor touches it, on its one pinned thread.
/// </summary>
public sealed class VcpuProgress
{
    public long Exits;
    public readonly long[] ExitsByReason = new long[32];
    public readonly Dictionary<ushort, long> ExitsByPort = new();
    public readonly HashSet<int> ThreadsSeen = new();
    /// <summary>Unmapped pages and port blocks this vCPU touched, bounded (see <see cref="UnmappedAccessLog"/>).</summary>
    public readonly UnmappedAccessLog Unmapped = new(VcpuExitHandler.UnmappedLogCapacity);

    /// <summary>kvm_run holds an exit this vCPU has not finished handling.</summary>
    public bool ExitPending;
    /// <summary>Items of the pending exit already delivered (OUT) or completed (IN).</summary>
    public uint ItemsDone;
    /// <summary>A read for the pending exit was sent and its answer (with <see cref="ReadSeq"/>) is awaited.</summary>
    public bool ReadInFlight;
    public long ReadSeq;

    /// <summary>Halted or failed: no more KVM_RUN for this vCPU.</summary>
    public bool Parked;
    public bool Halted;
    public bool Paused;
    /// <summary>A KVM_RUN was due while paused; run it on resume.</summary>
    public bool RunDeferred;

    /// <summary>The buses of the last <see cref="Vm.RoutingChanged"/> (null: the set-up's), so a restarted actor routes as its predecessor did.</summary>
    public Bus.PortBus? Ports;
    public Bus.MmioBus? Mmio;

    public int Restarts;
    /// <summary>The exit count at which the injected KVM_RUN failure last fired (so a restart does not refire it).</summary>
    public long KvmRunFaultFiredAt = -1;

    public void Count(KvmExitReason reason)
    {
        Exits++;
        var i = (int)reason;
        if (i < ExitsByReason.Length) ExitsByReason[i]++;
    }
}

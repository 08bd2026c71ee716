using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Akka.Actor;

namespace KvmActors.Sdk;

/// <summary>
/// An immutable picture of the port registers of one device whose read has no side effect at the moment it
/// was taken: for each such offset (from the start of the port range that matched, below 64), the value a read
/// would return. Published by the device actor through its <see cref="DeviceReadPath"/>, read by vCPU threads.
/// </summary>
public sealed class ReadSnapshot
{
    private readonly ulong[] _values;

    /// <summary>Bit n set: a read at offset n may be answered from <see cref="Value"/>.</summary>
    public ulong ValidOffsets { get; }

    /// <summary>Bit n set: accesses n bytes wide may be answered (the value is masked to the width).</summary>
    public int AccessSizes { get; }

    public ReadSnapshot(ulong validOffsets, ReadOnlySpan<ulong> values, int accessSizes)
    {
        ValidOffsets = validOffsets;
        AccessSizes = accessSizes;
        _values = values.ToArray();
    }

    public ulong Value(int offset) => _values[offset];

    /// <summary>The answer to a read of <paramref name="size"/> bytes at <paramref name="offset"/>, if this snapshot has it.</summary>
    public bool TryRead(ulong offset, int size, out ulong value)
    {
        if (offset < 64 && (ValidOffsets & (1UL << (int)offset)) != 0 && (uint)size < 32 && (AccessSizes & (1 << size)) != 0
            && offset < (ulong)_values.Length)
        {
            value = _values[offset] & (size >= 8 ? ulong.MaxValue : (1UL << (size * 8)) - 1);
            return true;
        }
        value = 0;
        return false;
    }

    /// <summary>Whether this snapshot says exactly what <paramref name="validOffsets"/> and <paramref name="values"/> say.</summary>
    public bool SameAs(ulong validOffsets, ReadOnlySpan<ulong> values, int accessSizes)
    {
        if (validOffsets != ValidOffsets || accessSizes != AccessSizes || values.Length != _values.Length) return false;
        for (var i = 0; i < values.Length; i++)
            if ((validOffsets & (1UL << i)) != 0 && values[i] != _values[i]) return false;
        return true;
    }
}

/// <summary>
/// The fast read path of one device actor: its latest <see cref="ReadSnapshot"/>, and per vCPU how many writes
/// (port or MMIO) that vCPU has sent to the device and how many of them the device has handled.
/// <para>
/// <b>Shared state between actors, on purpose.</b> Everything else in the runtime is messages. This exists
/// because <c>kvmactors bench</c> showed the IN round trip to the device actor is most of what the actor
/// runtime costs over a hand-written loop on a polled-console workload: tens of µs with the device on the
/// thread pool, still ~1.5-2 µs (PortRead, ReadCompleted, two more passes of the vCPU's mailbox) with the
/// device run on the vCPU thread by the runtime's device dispatcher, against ~8 µs for the exit itself; from
/// the snapshot it is ~0.05 µs (README, "Design: the exit path"; <c>kvmactors bench --ablation</c>, column
/// no-snapshot). The device actor stays the only writer of its state and of the snapshot; the vCPU only
/// reads an immutable object through a volatile reference, and only when the answer cannot differ from what
/// a round trip would give. <c>kvmactors.devices.read-snapshots = off</c> turns it off.
/// </para>
/// <para>
/// The rule (<see cref="TryRead"/>): a vCPU may answer an IN from the snapshot only when, for <i>every</i> vCPU,
/// the device has handled all the writes that vCPU had sent it. Writes are counted by the sender before they
/// are told, and by the device after it has handled the write and published the snapshot that follows it;
/// the reader reads the sent count, then the handled count, then the snapshot. So a read never overtakes a
/// write of its own vCPU (program order), nor a write of another vCPU that it could know about through
/// guest memory (that vCPU told its write before it went on running the guest). Otherwise, and whenever
/// the register's read has a side effect (the device leaves it out of the snapshot), the vCPU does the round
/// trip as before. A device that publishes nothing costs the vCPU one counter increment per write.
/// The counts assume what the runtime does: only vCPU actors send a device <c>PortWrite</c>/<c>MmioWrite</c>,
/// each counted with its own vCPU id (a write told to a device from elsewhere would be counted as handled
/// without having been counted as sent).
/// </para>
/// </summary>
public sealed class DeviceReadPath
{
    /// <summary>The vCPU ids a path counts at most (guest.vcpus is at most 254).</summary>
    public const int MaxVcpus = 256;

    // One cache line per vCPU for what only that vCPU writes (its sent count, its read counters), so vCPUs
    // never write to a line another vCPU writes.
    [StructLayout(LayoutKind.Explicit, Size = 64)]
    private struct PerVcpu
    {
        [FieldOffset(0)] public long Sent;
        [FieldOffset(8)] public long FastReads;
        [FieldOffset(16)] public long SlowReads;
        [FieldOffset(24)] public long WaitedReads;
    }

    // Sized to the VM's vCPUs (a 256-slot path cost 18 KiB per device).
    private readonly PerVcpu[] _vcpus;
    private readonly long[] _handled; // written by the device actor only
    private int _vcpusSeen;                                 // 1 + the highest vCPU id that ever sent a write
    private volatile bool _unusable;                        // a write came from a vCPU id this path cannot count
    private ReadSnapshot? _snapshot;

    private static readonly ConditionalWeakTable<IActorRef, DeviceReadPath> Paths = new();

    public DeviceReadPath(int vcpus = MaxVcpus)
    {
        vcpus = Math.Clamp(vcpus, 1, MaxVcpus);
        _vcpus = new PerVcpu[vcpus];
        _handled = new long[vcpus];
    }

    /// <summary>
    /// The path of the device actor <paramref name="device"/> (the same object for its actor and every vCPU),
    /// counting vCPU ids below <paramref name="vcpus"/> (the VM's vCPU count: whoever comes first creates it).
    /// </summary>
    public static DeviceReadPath Of(IActorRef device, int vcpus = MaxVcpus) =>
        Paths.TryGetValue(device, out var path) ? path : Paths.GetValue(device, _ => new DeviceReadPath(vcpus));

    /// <summary>The snapshot the device published last (null: none, or invalidated).</summary>
    public ReadSnapshot? Snapshot => Volatile.Read(ref _snapshot);

    /// <summary>vCPU side, before telling a write to the device. Only vCPU <paramref name="vcpuId"/> calls it for that id.</summary>
    public void WriteSending(int vcpuId)
    {
        if ((uint)vcpuId >= (uint)_vcpus.Length) { _unusable = true; return; }
        ref var mine = ref _vcpus[vcpuId];
        if (mine.Sent == 0 && vcpuId >= Volatile.Read(ref _vcpusSeen)) RaiseSeen(vcpuId + 1);
        // One writer per slot: a release store is enough (the Tell that follows publishes it to the device anyway).
        Volatile.Write(ref mine.Sent, mine.Sent + 1);
    }

    private void RaiseSeen(int n)
    {
        int seen;
        while ((seen = Volatile.Read(ref _vcpusSeen)) < n && Interlocked.CompareExchange(ref _vcpusSeen, n, seen) != seen) { }
    }

    /// <summary>Device side, after handling a write of <paramref name="vcpuId"/> and publishing what follows it.</summary>
    public void WriteHandled(int vcpuId)
    {
        // One writer (the device actor, one message at a time): a release store after the snapshot's.
        if ((uint)vcpuId < (uint)_handled.Length) Volatile.Write(ref _handled[vcpuId], _handled[vcpuId] + 1);
    }

    /// <summary>Device side: the registers as they are now (null: answer every read with a round trip).</summary>
    public void Publish(ReadSnapshot? snapshot) => Volatile.Write(ref _snapshot, snapshot);

    /// <summary>Device side: the registers are not known (the device failed): round trips until it publishes again.</summary>
    public void Invalidate() => Publish(null);

    /// <summary>
    /// vCPU side: the answer to a port read of <paramref name="size"/> bytes at <paramref name="offset"/>, when it
    /// can be given without asking the device (see the class comment); false means: do the round trip.
    /// </summary>
    /// <param name="waitTicks">How long (Stopwatch ticks) to wait, spinning, for writes still being handled by the
    /// device on another thread, before giving up on the snapshot: a device busy elsewhere is nearly always done
    /// within a µs or two, and the round trip instead blocks the vCPU thread until the device's thread wakes it.</param>
    public bool TryRead(int vcpuId, ulong offset, int size, out ulong value, long waitTicks = 0)
    {
        value = 0;
        if ((uint)vcpuId >= (uint)_vcpus.Length) return false;
        if (!_unusable && Volatile.Read(ref _snapshot) is not null && (AllWritesHandled() || waitTicks > 0 && WaitForWrites(vcpuId, waitTicks)))
        {
            // Read after the counts: at least as new as the state that followed every write counted above.
            var snapshot = Volatile.Read(ref _snapshot);
            if (snapshot is not null && snapshot.TryRead(offset, size, out value))
            {
                _vcpus[vcpuId].FastReads++;
                return true;
            }
        }
        _vcpus[vcpuId].SlowReads++;
        return false;
    }

    private bool WaitForWrites(int vcpuId, long waitTicks)
    {
        var deadline = System.Diagnostics.Stopwatch.GetTimestamp() + waitTicks;
        var spin = new SpinWait();
        do
        {
            spin.SpinOnce(sleep1Threshold: -1); // spins, then yields the CPU (to the device's thread, if it waits for one)
            if (AllWritesHandled())
            {
                _vcpus[vcpuId].WaitedReads++;
                return true;
            }
        } while (System.Diagnostics.Stopwatch.GetTimestamp() < deadline);
        return false;
    }

    private bool AllWritesHandled()
    {
        var n = Volatile.Read(ref _vcpusSeen);
        for (var v = 0; v < n; v++)
        {
            var sent = Volatile.Read(ref _vcpus[v].Sent); // the sent count first, then the handled count
            if (Volatile.Read(ref _handled[v]) < sent) return false;
        }
        return true;
    }

    /// <summary>Reads answered from the snapshot after waiting for other vCPUs' writes to be handled (counted in Fast too; diagnostics).</summary>
    public long WaitedReads
    {
        get
        {
            long waited = 0;
            for (var v = 0; v < _vcpus.Length; v++) waited += Volatile.Read(ref _vcpus[v].WaitedReads);
            return waited;
        }
    }

    /// <summary>Reads answered from the snapshot and reads that fell back to a round trip, over all vCPUs (diagnostics).</summary>
    public (long Fast, long Slow) ReadCounts
    {
        get
        {
            long fast = 0, slow = 0;
            for (var v = 0; v < _vcpus.Length; v++) { fast += Volatile.Read(ref _vcpus[v].FastReads); slow += Volatile.Read(ref _vcpus[v].SlowReads); }
            return (fast, slow);
        }
    }
}

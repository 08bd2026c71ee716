using KvmActors.Sdk;

namespace KvmActors.Runtime.Vcpu;

/// <summary>
/// Which unmapped places a guest touched, bounded: one entry per page (MMIO, 4 KiB) or port block (16 ports)
/// with a count, at most <see cref="Capacity"/> entries. A guest walking every unmapped address fills it once
/// and is then only counted, so neither the bookkeeping nor the log it drives grows with what the guest does.
/// </summary>
public sealed class UnmappedAccessLog(int capacity)
{
    public const int MmioPageShift = 12;
    public const int PortBlockShift = 4;

    private readonly Dictionary<(AddressSpace, ulong), long> _counts = new();

    public int Capacity { get; } = capacity;

    /// <summary>Distinct pages/blocks recorded (never more than <see cref="Capacity"/>).</summary>
    public int Entries => _counts.Count;

    /// <summary>Accesses counted, recorded or not.</summary>
    public long Total { get; private set; }

    /// <summary>Accesses to pages/blocks beyond the capacity (counted, not recorded).</summary>
    public long NotRecorded { get; private set; }

    public enum Outcome
    {
        /// <summary>A page/block already recorded: counted.</summary>
        Known,
        /// <summary>The first access to this page/block: worth one log line.</summary>
        NewEntry,
        /// <summary>The first access beyond the capacity: worth one "further accesses not logged" line.</summary>
        Full,
        /// <summary>Beyond the capacity, after <see cref="Full"/>: counted only.</summary>
        Dropped,
    }

    /// <summary>The page or port block an address belongs to (its first address).</summary>
    public static ulong PageOf(AddressSpace space, ulong address) =>
        space == AddressSpace.Mmio ? address >> MmioPageShift << MmioPageShift : address >> PortBlockShift << PortBlockShift;

    public Outcome Record(AddressSpace space, ulong address)
    {
        Total++;
        var key = (space, PageOf(space, address));
        if (_counts.TryGetValue(key, out var n))
        {
            _counts[key] = n + 1;
            return Outcome.Known;
        }
        if (_counts.Count < Capacity)
        {
            _counts[key] = 1;
            return Outcome.NewEntry;
        }
        return NotRecorded++ == 0 ? Outcome.Full : Outcome.Dropped;
    }

    /// <summary>The recorded pages/blocks and their counts, most touched first.</summary>
    public IEnumerable<(AddressSpace Space, ulong Page, long Count)> Pages =>
        _counts.OrderByDescending(kv => kv.Value).Select(kv => (kv.Key.Item1, kv.Key.Item2, kv.Value));
}

using Akka.Actor;

namespace KvmActors.Runtime.Bus;

/// <summary>
/// Maps every I/O port to the device actor that owns it. Immutable once built and shared read-only by
/// the vCPU actors: a lookup is one array index on the exit path.
/// </summary>
public sealed class PortBus
{
    public sealed record Entry(string DeviceName, PortRange Range, IActorRef Device);

    private readonly Entry?[] _byPort = new Entry?[65536];
    public IReadOnlyList<Entry> Entries { get; }

    private PortBus(List<Entry> entries)
    {
        Entries = entries;
        foreach (var e in entries)
            for (int p = e.Range.First; p <= e.Range.Last; p++) _byPort[p] = e;
    }

    /// <summary>The device covering <paramref name="port"/>, or null for an unmapped port.</summary>
    public Entry? Lookup(ushort port) => _byPort[port];

    public static PortBus Build(IEnumerable<Entry> entries)
    {
        var list = new List<Entry>();
        foreach (var e in entries)
        {
            if (e.Range.Last < e.Range.First)
                throw new BusOverlapException($"device '{e.DeviceName}' has an empty port range {e.Range}");
            var clash = list.FirstOrDefault(x => x.Range.Overlaps(e.Range));
            if (clash is not null)
                throw new BusOverlapException(
                    $"port ranges overlap: device '{clash.DeviceName}' ({clash.Range}) and device '{e.DeviceName}' ({e.Range})");
            list.Add(e);
        }
        return new PortBus(list);
    }
}

/// <summary>Maps guest-physical MMIO ranges to device actors (sorted, binary search).</summary>
public sealed class MmioBus
{
    public sealed record Entry(string DeviceName, MmioRange Range, IActorRef Device);

    private readonly Entry[] _sorted;
    public IReadOnlyList<Entry> Entries => _sorted;

    private MmioBus(Entry[] sorted) => _sorted = sorted;

    public Entry? Lookup(ulong address)
    {
        int lo = 0, hi = _sorted.Length - 1;
        while (lo <= hi)
        {
            var mid = (lo + hi) >> 1;
            var e = _sorted[mid];
            if (address < e.Range.First) hi = mid - 1;
            else if (address > e.Range.Last) lo = mid + 1;
            else return e;
        }
        return null;
    }

    public static MmioBus Build(IEnumerable<Entry> entries)
    {
        var list = new List<Entry>();
        foreach (var e in entries)
        {
            if (e.Range.Last < e.Range.First)
                throw new BusOverlapException($"device '{e.DeviceName}' has an empty MMIO range {e.Range}");
            var clash = list.FirstOrDefault(x => x.Range.Overlaps(e.Range));
            if (clash is not null)
                throw new BusOverlapException(
                    $"MMIO ranges overlap: device '{clash.DeviceName}' ({clash.Range}) and device '{e.DeviceName}' ({e.Range})");
            list.Add(e);
        }
        return new MmioBus(list.OrderBy(e => e.Range.First).ToArray());
    }
}

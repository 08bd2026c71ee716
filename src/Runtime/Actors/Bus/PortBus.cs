using Akka.Actor;

namespace KvmActors.Runtime.Bus;

/// <summary>
/// Maps I/O ports to the device actor that owns them: the ranges in a small sorted array, found by binary
/// search (a VM has a handful of port ranges; a 65,536-entry table cost 512 KiB of heap per VM). Immutable
/// once built and shared read-only by the vCPU actors.
/// </summary>
public sealed class PortBus
{
    /// <param name="AwaitsWrites">The vCPU waits for each write to be answered (<see cref="DeviceTypeAttribute.AwaitsWrites"/>).</param>
    public sealed record Entry(string DeviceName, PortRange Range, IActorRef Device, bool AwaitsWrites = false);

    private readonly RangeMap<Entry> _map;
    public IReadOnlyList<Entry> Entries => _map.Entries;

    private PortBus(RangeMap<Entry> map) => _map = map;

    /// <summary>The device covering <paramref name="port"/>, or null for an unmapped port.</summary>
    public Entry? Lookup(ushort port) => _map.Lookup(port);

    public static PortBus Build(IEnumerable<Entry> entries) =>
        new(RangeMap<Entry>.Build(entries, e => (e.Range.First, e.Range.Last), e => (e.DeviceName, e.Range.ToString()), "port"));
}

/// <summary>Maps guest-physical MMIO ranges to device actors (sorted, binary search).</summary>
public sealed class MmioBus
{
    public sealed record Entry(string DeviceName, MmioRange Range, IActorRef Device);

    private readonly RangeMap<Entry> _map;
    public IReadOnlyList<Entry> Entries => _map.Entries;

    private MmioBus(RangeMap<Entry> map) => _map = map;

    public Entry? Lookup(ulong address) => _map.Lookup(address);

    public static MmioBus Build(IEnumerable<Entry> entries) =>
        new(RangeMap<Entry>.Build(entries, e => (e.Range.First, e.Range.Last), e => (e.DeviceName, e.Range.ToString()), "MMIO"));
}

/// <summary>Disjoint inclusive ranges, sorted by start, with their entries: a lookup is a binary search.</summary>
internal sealed class RangeMap<T> where T : class
{
    private readonly ulong[] _first;
    private readonly ulong[] _last;
    private readonly T[] _entries;

    public IReadOnlyList<T> Entries => _entries;

    private RangeMap(ulong[] first, ulong[] last, T[] entries)
    {
        _first = first;
        _last = last;
        _entries = entries;
    }

    public T? Lookup(ulong address)
    {
        int lo = 0, hi = _first.Length - 1;
        while (lo <= hi)
        {
            var mid = (lo + hi) >> 1;
            if (address < _first[mid]) hi = mid - 1;
            else if (address > _last[mid]) lo = mid + 1;
            else return _entries[mid];
        }
        return null;
    }

    public static RangeMap<T> Build(IEnumerable<T> entries, Func<T, (ulong First, ulong Last)> range, Func<T, (string Device, string Range)> describe, string space)
    {
        var list = new List<(ulong First, ulong Last, T Entry)>();
        foreach (var e in entries)
        {
            var (first, last) = range(e);
            if (last < first)
                throw new BusOverlapException($"device '{describe(e).Device}' has an empty {space} range {describe(e).Range}");
            var clash = list.FindIndex(x => x.First <= last && first <= x.Last);
            if (clash >= 0)
                throw new BusOverlapException(
                    $"{space} ranges overlap: device '{describe(list[clash].Entry).Device}' ({describe(list[clash].Entry).Range}) and device '{describe(e).Device}' ({describe(e).Range})");
            list.Add((first, last, e));
        }
        list.Sort((a, b) => a.First.CompareTo(b.First));
        return new RangeMap<T>(list.Select(x => x.First).ToArray(), list.Select(x => x.Last).ToArray(), list.Select(x => x.Entry).ToArray());
    }
}

using KvmActors.Sdk;
using System.Collections.Immutable;

namespace KvmActors.Devices.PostCode;

/// <summary>Ask a <c>post-code</c> device for the codes it has recorded; it answers with <see cref="PostCodes"/>.</summary>
public sealed record GetPostCodes
{
    public static GetPostCodes Instance { get; } = new();
}

/// <summary>
/// The POST codes a guest wrote, oldest first (an immutable snapshot). When the guest wrote more than the
/// device keeps (<c>max-codes</c>), these are the most recent ones and <see cref="Dropped"/> counts the
/// older ones that were discarded.
/// </summary>
public sealed record PostCodes(IReadOnlyList<byte> Codes)
{
    /// <summary>How many of the oldest codes were discarded to stay within the limit.</summary>
    public long Dropped { get; init; }
    /// <summary>Every code written, kept or not.</summary>
    public long Total => Codes.Count + Dropped;
}

/// <summary>A <see cref="PostCodeLog"/>'s state: the last code, the codes kept (oldest first) and how many older ones were dropped.</summary>
public sealed record PostCodeLogState(byte Last, byte[] Codes, long Dropped);

/// <summary>The codes written to a POST port: the most recent <see cref="Capacity"/> of them, plus the last one.</summary>
public sealed class PostCodeLog
{
    private readonly Queue<byte> _codes = new();

    public PostCodeLog(int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        Capacity = capacity;
    }

    public int Capacity { get; }
    public long Dropped { get; private set; }
    /// <summary>The last code written; 0x00 before any.</summary>
    public byte Last { get; private set; }

    public void Record(byte code)
    {
        Last = code;
        _codes.Enqueue(code);
        if (_codes.Count > Capacity)
        {
            _codes.Dequeue();
            Dropped++;
        }
    }

    public PostCodes Snapshot() => new(ImmutableArray.CreateRange(_codes)) { Dropped = Dropped };

    public PostCodeLogState Save() => new(Last, _codes.ToArray(), Dropped);

    /// <summary>
    /// Takes a saved log. More codes than <see cref="Capacity"/> (<c>max-codes</c> was lowered since) is not an
    /// error: the oldest go, counted as dropped, as if they had been written with this limit.
    /// </summary>
    public void Restore(PostCodeLogState state)
    {
        if (state.Dropped < 0) throw new DeviceStateException($"post-code state: dropped: {state.Dropped} is negative");
        var excess = Math.Max(0, state.Codes.Length - Capacity);
        _codes.Clear();
        foreach (var code in state.Codes.AsSpan(excess)) _codes.Enqueue(code);
        Dropped = state.Dropped + excess;
        Last = state.Last;
    }
}

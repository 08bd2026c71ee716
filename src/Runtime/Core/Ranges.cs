namespace KvmActors;

/// <summary>An inclusive range of I/O ports.</summary>
public readonly record struct PortRange(ushort First, ushort Last)
{
    public bool Contains(ushort port) => port >= First && port <= Last;
    public bool Overlaps(PortRange o) => First <= o.Last && o.First <= Last;
    public override string ToString() => First == Last ? $"0x{First:x}" : $"0x{First:x}-0x{Last:x}";
}

/// <summary>An inclusive range of guest-physical MMIO addresses.</summary>
public readonly record struct MmioRange(ulong First, ulong Last)
{
    public bool Contains(ulong a) => a >= First && a <= Last;
    public bool Overlaps(MmioRange o) => First <= o.Last && o.First <= Last;
    public override string ToString() => $"0x{First:x}-0x{Last:x}";
}

/// <summary>Two devices claim the same address. Names both, so the config can be fixed.</summary>
public sealed class BusOverlapException(string message) : KvmActorsException(ErrorKind.Config, message);

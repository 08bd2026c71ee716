using System.Text;
using KvmActors.Sdk;

namespace KvmActors.Devices.PciTestdev;

/// <summary>A <see cref="PciTestdevModel"/>'s state: the current test (-1: none) and each test's hit count.</summary>
public sealed record PciTestdevState(int Current, IReadOnlyList<uint> Counts);

/// <summary>
/// The register model of QEMU's PCI test device (<c>-device pci-testdev</c>, 1b36:0005), as kvm-unit-tests'
/// lib/pci-testdev.c and x86/vmexit.c use it. BAR 0 (memory, 4 KiB) and BAR 1 (I/O, 256 ports) lead to the same
/// registers; six tests, three per BAR: "mmio-" or "portio-" + "no-eventfd", "wildcard-eventfd", "datamatch-eventfd".
/// <list type="bullet">
/// <item>A write of n (0-2) to offset 0 selects test n of the BAR written (any other value: none). The test's header
/// then reads at offset 0: <c>u8 test, u8 width, u8 pad[2], u32 offset, u8 data, u8 pad[3], u32 count, name\0</c>
/// (reads past it, or with no test selected, give 0). Selecting a test zeroes its count.</item>
/// <item>A write at the header's offset (2048 + i in BAR 0, 128 + i in BAR 1, for test i = 0-5) is a hit, counted.
/// "datamatch" counts only writes of the header's width (1) and data (0xfa); the others any write there.</item>
/// </list>
/// QEMU binds the two eventfd tests to an ioeventfd, so their hits never reach the device and the count stays 0 (the
/// guest accepts 0 or the number of writes); here every hit reaches the device, so the count is exact.
/// </summary>
public sealed class PciTestdevModel
{
    public const ushort Vendor = 0x1b36, DeviceId = 0x0005;
    public const int MemBar = 0, IoBar = 1;
    public const ulong MemSize = 4096, IoSize = 256;
    public const byte DataMatch = 0xfa, NoMatch = 0xce;
    private const int TestsPerBar = 3, HeaderSize = 16;
    private static readonly string[] Tests = ["no-eventfd", "wildcard-eventfd", "datamatch-eventfd"];

    private readonly uint[] _counts = new uint[2 * TestsPerBar];

    /// <summary>The selected test (0-5), or -1.</summary>
    public int Current { get; private set; } = -1;

    public uint Count(int test) => _counts[test];

    public static PciDeclaration Declaration => new(Vendor, DeviceId, 0x00ff00,
        [new PciBar(MemBar, MemSize, PciBarKind.Mem32), new PciBar(IoBar, IoSize, PciBarKind.Io)]);

    public static string Name(int test) => (test < TestsPerBar ? "mmio-" : "portio-") + Tests[test % TestsPerBar];

    /// <summary>Where test <paramref name="test"/>'s hits go, in its BAR.</summary>
    public static uint HitOffset(int test) => (test < TestsPerBar ? 2048u : 128u) + (uint)test;

    private static bool MatchesData(int test) => test % TestsPerBar != 1; // all but wildcard

    public ulong Read(int bar, ulong offset, int size)
    {
        if (Current < 0) return 0;
        var header = Header(Current);
        if (offset + (ulong)size >= (ulong)header.Length) return 0; // as QEMU: a read reaching the end gives 0
        ulong v = 0;
        for (var i = 0; i < size; i++) v |= (ulong)header[(int)offset + i] << (8 * i);
        return v;
    }

    public void Write(int bar, ulong offset, int size, ulong value)
    {
        var type = bar == MemBar ? 0 : 1;
        if (offset == 0)
        {
            Current = -1;
            if (value >= TestsPerBar) return;
            Current = type * TestsPerBar + (int)value;
            _counts[Current] = 0;
            return;
        }
        if (Current < 0 || offset != HitOffset(Current)) return;
        if (MatchesData(Current) && (size != 1 || value != DataMatch)) return;
        _counts[Current]++;
    }

    private byte[] Header(int test)
    {
        var name = Encoding.ASCII.GetBytes(Name(test));
        var h = new byte[HeaderSize + name.Length + 1];
        h[0] = (byte)test;
        h[1] = 1; // width
        BitConverter.TryWriteBytes(h.AsSpan(4), HitOffset(test));
        h[8] = MatchesData(test) ? DataMatch : NoMatch;
        BitConverter.TryWriteBytes(h.AsSpan(12), _counts[test]);
        name.CopyTo(h, HeaderSize);
        return h;
    }

    public PciTestdevState Save() => new(Current, _counts.ToArray());

    public void Restore(PciTestdevState state)
    {
        if (state.Current is < -1 or >= 2 * TestsPerBar)
            throw new DeviceStateException($"pci-testdev state: current test {state.Current} (-1 or 0-5)");
        if (state.Counts.Count != _counts.Length)
            throw new DeviceStateException($"pci-testdev state: {state.Counts.Count} counts, the device has {_counts.Length} tests");
        Current = state.Current;
        for (var i = 0; i < _counts.Length; i++) _counts[i] = state.Counts[i];
    }
}

using KvmActors.Sdk;

namespace KvmActors.Devices.PcTestdev;

/// <summary>
/// A <see cref="PcTestdevModel"/>'s state: the data register, the flush-page count and last page, and the 64 KiB
/// test memory (null while it is all zeros, so a state file stays small for the common case).
/// </summary>
public sealed record PcTestdevState(uint Data, long Flushes, uint LastFlushAddress, byte[]? Iomem);

/// <summary>
/// The register model of QEMU's ISA test device (<c>-device pc-testdev</c>), as kvm-unit-tests uses it:
/// <list type="bullet">
/// <item>0xe0-0xe3: a 32-bit data register read back at any width and offset (emulator.c's string I/O
/// tests, realmode.c's in/out tests): a write of n bytes at offset k replaces bytes k..k+n-1, a read returns them.</item>
/// <item>0xe4-0xe7: "flush page": a 32-bit write names a guest-physical page. QEMU unmaps and remaps it so
/// KVM's shadow/EPT mapping is dropped (eventinj.c's IRET tests flush their stack and IDT pages). Here the
/// write is counted and dropped: KVM faults the page in again by itself, and the tests only need the write
/// to be harmless. Reads give 0.</item>
/// <item>0xe8-0xeb: the same data register as 0xe0, reached byte by byte (QEMU splits wider accesses).</item>
/// <item>0x2000-0x2017: IRQ lines 0-23: a write of v drives line (port - 0x2000) high when v != 0, low when 0
/// (lib/x86/apic.c set_irq_line: the IOAPIC tests). Reads give 0.</item>
/// <item>MMIO 0xff000000-0xff00ffff: 64 KiB of device memory that behaves as RAM but every access exits
/// (x86/ioram.h IORAM_BASE_PHYS/IORAM_LEN: emulator.c, cmpxchg8b.c, lam.c run instructions on it).</item>
/// </list>
/// </summary>
public sealed class PcTestdevModel
{
    public const ushort DataPort = 0xe0, FlushPort = 0xe4, DataBytePort = 0xe8, IrqPortBase = 0x2000;
    public const int IrqLines = 24;
    public const ulong IomemBase = 0xff000000, IomemLength = 0x10000;

    private readonly byte[] _iomem = new byte[IomemLength];

    public uint Data { get; private set; }
    /// <summary>How many flush-page writes arrived (and the last page named).</summary>
    public long Flushes { get; private set; }
    public uint LastFlushAddress { get; private set; }

    /// <summary>A port read at absolute port <paramref name="port"/>.</summary>
    public ulong ReadPort(ushort port, int size) => port switch
    {
        >= DataPort and < DataPort + 4 => ReadData(port - DataPort, size),
        >= DataBytePort and < DataBytePort + 4 => ReadData(port - DataBytePort, size),
        _ => 0, // flush page and IRQ ports are write-only; QEMU reads them as 0
    };

    /// <summary>A port write; returns the IRQ line to drive (and its level) when the write was to an IRQ port.</summary>
    public (int Line, bool Level)? WritePort(ushort port, int size, ulong value)
    {
        switch (port)
        {
            case >= DataPort and < DataPort + 4:
                WriteData(port - DataPort, size, value);
                return null;
            case >= DataBytePort and < DataBytePort + 4:
                WriteData(port - DataBytePort, size, value);
                return null;
            case >= FlushPort and < FlushPort + 4:
                Flushes++;
                LastFlushAddress = (uint)value;
                return null;
            case >= IrqPortBase and < IrqPortBase + IrqLines:
                return (port - IrqPortBase, (value & Mask(size)) != 0);
            default:
                return null;
        }
    }

    private ulong ReadData(int offset, int size)
    {
        var width = Math.Min(size, 4 - offset); // an access running past 0xe3 sees nothing there
        return (Data >> (offset * 8)) & Mask(width);
    }

    private void WriteData(int offset, int size, ulong value)
    {
        var width = Math.Min(size, 4 - offset);
        var mask = (uint)(Mask(width) << (offset * 8));
        Data = (Data & ~mask) | ((uint)(value << (offset * 8)) & mask);
    }

    /// <summary>An MMIO read at <paramref name="offset"/> into the test memory, little-endian, up to 8 bytes.</summary>
    public ulong ReadIomem(ulong offset, int size)
    {
        ulong value = 0;
        for (var i = 0; i < size && offset + (ulong)i < IomemLength; i++)
            value |= (ulong)_iomem[offset + (ulong)i] << (i * 8);
        return value;
    }

    public void WriteIomem(ulong offset, int size, ulong value)
    {
        for (var i = 0; i < size && offset + (ulong)i < IomemLength; i++)
            _iomem[offset + (ulong)i] = (byte)(value >> (i * 8));
    }

    public PcTestdevState Save() =>
        new(Data, Flushes, LastFlushAddress, _iomem.AsSpan().ContainsAnyExcept((byte)0) ? _iomem.ToArray() : null);

    /// <summary>Takes a saved state, after checking it (a <see cref="DeviceStateException"/> names the field that cannot be).</summary>
    public void Restore(PcTestdevState state)
    {
        if (state.Iomem is { Length: var n } && (ulong)n != IomemLength)
            throw new DeviceStateException($"pc-testdev state: iomem: {n} bytes, the test memory has {IomemLength}");
        if (state.Flushes < 0)
            throw new DeviceStateException($"pc-testdev state: flushes: {state.Flushes} is negative");
        Data = state.Data;
        Flushes = state.Flushes;
        LastFlushAddress = state.LastFlushAddress;
        if (state.Iomem is { } iomem) iomem.CopyTo(_iomem, 0);
        else Array.Clear(_iomem);
    }

    private static ulong Mask(int size) => size >= 8 ? ulong.MaxValue : (1UL << (size * 8)) - 1;
}

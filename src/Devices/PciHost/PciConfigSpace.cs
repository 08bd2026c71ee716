using KvmActors.Sdk;

namespace KvmActors.Devices.PciHost;

/// <summary>
/// The 256-byte type-0 configuration space of one PCI function, with a write mask per byte (as QEMU keeps it):
/// IDs, class, header type and interrupt pin read-only; command (I/O, memory, bus master, SERR#, INTx disable),
/// cache line size, latency timer and interrupt line writable; BARs writable above their size, so writing all ones
/// and reading back gives the size mask; no expansion ROM and an empty capability list (status bit 4 clear).
/// </summary>
public sealed class PciConfigSpace
{
    public const int Size = 256;
    public const int Command = 0x04, BarBase = 0x10, InterruptLine = 0x3c, InterruptPin = 0x3d;
    public const ushort CommandIo = 1, CommandMemory = 2, CommandWritable = 0x0507;
    public const int Status = 0x06, CapabilityPointer = 0x34;
    /// <summary>Where a function's MSI capability sits (the only capability here): ID 5, control, address lo/hi, data.</summary>
    public const int MsiCap = 0x40, MsiControl = MsiCap + 2, MsiAddressLo = MsiCap + 4, MsiAddressHi = MsiCap + 8, MsiData = MsiCap + 12;
    public const ushort MsiEnable = 1, Msi64Bit = 0x80;

    private readonly byte[] _config = new byte[Size];
    private readonly byte[] _writable = new byte[Size];

    /// <summary>The function's BARs (none for the host bridge).</summary>
    public IReadOnlyList<PciBar> Bars { get; }

    public PciConfigSpace(ushort vendor, ushort device, uint classCode, byte revision, IReadOnlyList<PciBar> bars, byte pin = 0,
        ushort subsystemVendor = 0, ushort subsystem = 0, bool msi = false)
    {
        HasMsi = msi;
        if (msi)
        {
            // Status bit 4: a capability list, starting at 0x34's pointer. MSI: 64-bit, one vector (MMC 0), no masking;
            // enable and MME (which with MMC 0 only takes 0) writable, the address dword-aligned, the data 16 bits.
            Put(Status, 2, 0x10);
            _config[CapabilityPointer] = MsiCap;
            Put(MsiCap, 2, 0x0005);
            Put(MsiControl, 2, Msi64Bit);
            Mask(MsiControl, 2, MsiEnable);
            Mask(MsiAddressLo, 4, 0xffff_fffc);
            Mask(MsiAddressHi, 4, 0xffff_ffff);
            Mask(MsiData, 2, 0xffff);
        }
        Bars = bars;
        Put(0x00, 2, vendor);
        Put(0x02, 2, device);
        _config[0x08] = revision;
        Put(0x09, 3, classCode);
        Put(0x2c, 2, subsystemVendor);
        Put(0x2e, 2, subsystem);
        _config[InterruptPin] = pin;
        Mask(Command, 2, CommandWritable);
        Mask(0x0c, 2, 0xffff); // cache line size, latency timer
        Mask(InterruptLine, 1, 0xff);
        foreach (var bar in bars)
        {
            var at = BarBase + bar.Index * 4;
            if (bar.IsIo)
            {
                Put(at, 4, 1);
                Mask(at, 4, (uint)~(bar.Size - 1) & ~3u);
                continue;
            }
            Put(at, 4, (bar.Kind == PciBarKind.Mem64 ? 4u : 0u) | (bar.Prefetchable ? 8u : 0u));
            Mask(at, 4, (uint)~(bar.Size - 1) & ~0xfu);
            if (bar.Kind == PciBarKind.Mem64) Mask(at + 4, 4, (uint)(~(bar.Size - 1) >> 32));
        }
    }

    /// <summary>A function as the VM laid it out: its declaration, the BAR addresses firmware chose, decoding on.</summary>
    public static PciConfigSpace For(PciFunction f)
    {
        var d = f.Declaration;
        var space = new PciConfigSpace(d.VendorId, d.DeviceId, d.ClassCode, d.Revision, d.Bars, d.InterruptPin, d.SubsystemVendorId, d.SubsystemId, d.Msi);
        foreach (var bar in d.Bars)
        {
            var address = f.BarAddresses[bar.Index];
            space.Write(BarBase + bar.Index * 4, 4, (uint)address);
            if (bar.Kind == PciBarKind.Mem64) space.Write(BarBase + bar.Index * 4 + 4, 4, (uint)(address >> 32));
        }
        if (d.InterruptPin != 0) space.Write(InterruptLine, 1, (uint)f.Irq);
        space.Write(Command, 2, CommandIo | CommandMemory);
        return space;
    }

    public ushort CommandRegister => (ushort)Get(Command, 2);

    /// <summary>Whether the function has the MSI capability.</summary>
    public bool HasMsi { get; }

    /// <summary>What the MSI capability says now (disabled for a function without one).</summary>
    public PciMsiConfig MsiConfig() => !HasMsi
        ? new PciMsiConfig(false, 0, 0)
        : new PciMsiConfig((Get(MsiControl, 2) & MsiEnable) != 0, Get(MsiAddressLo, 4) | (ulong)Get(MsiAddressHi, 4) << 32, (ushort)Get(MsiData, 2));

    /// <summary>Up to 4 bytes at <paramref name="offset"/> (bytes past the end read 0).</summary>
    public uint Read(int offset, int size)
    {
        uint v = 0;
        for (var i = 0; i < size && offset + i < Size; i++) v |= (uint)_config[offset + i] << (8 * i);
        return v;
    }

    /// <summary>Up to 4 bytes at <paramref name="offset"/>, each through its write mask.</summary>
    public void Write(int offset, int size, uint value)
    {
        for (var i = 0; i < size && offset + i < Size; i++)
        {
            var m = _writable[offset + i];
            _config[offset + i] = (byte)((_config[offset + i] & ~m) | ((byte)(value >> (8 * i)) & m));
        }
    }

    /// <summary>
    /// Where each BAR decodes now: its address with I/O (or memory) decoding on in the command register, and the
    /// address not 0 and not running past the space (I/O above 0xffff, a 32-bit BAR at 4 GiB: what a sizing write
    /// of all ones leaves is not a mapping, as in QEMU).
    /// </summary>
    public IReadOnlyList<PciBarMapping> Mappings()
    {
        var list = new List<PciBarMapping>();
        var command = CommandRegister;
        foreach (var bar in Bars)
        {
            var at = BarBase + bar.Index * 4;
            ulong address = Get(at, 4) & (bar.IsIo ? ~3u : ~0xfu);
            if (bar.Kind == PciBarKind.Mem64) address |= (ulong)Get(at + 4, 4) << 32;
            var on = bar.IsIo ? (command & CommandIo) != 0 : (command & CommandMemory) != 0;
            var limit = bar.Kind switch { PciBarKind.Io => 0xffffUL, PciBarKind.Mem32 => 0xfffffffeUL, _ => ulong.MaxValue - 1 };
            if (!on || address == 0 || address + bar.Size - 1 > limit || address + bar.Size - 1 < address) continue;
            list.Add(new PciBarMapping(bar.Index, bar.Kind, address, bar.Size));
        }
        return list;
    }

    public byte[] Save() => _config.ToArray();

    /// <summary>Takes saved bytes; only the writable bits are taken, so a state file cannot change IDs or BAR sizes.</summary>
    public void Restore(byte[] saved)
    {
        if (saved.Length != Size) throw new DeviceStateException($"pci-host state: a configuration space of {saved.Length} bytes, not {Size}");
        for (var i = 0; i < Size; i++) _config[i] = (byte)((_config[i] & ~_writable[i]) | (saved[i] & _writable[i]));
    }

    private uint Get(int offset, int size) => Read(offset, size);

    private void Put(int offset, int size, uint value)
    {
        for (var i = 0; i < size; i++) _config[offset + i] = (byte)(value >> (8 * i));
    }

    private void Mask(int offset, int size, uint mask)
    {
        for (var i = 0; i < size; i++) _writable[offset + i] = (byte)(mask >> (8 * i));
    }
}

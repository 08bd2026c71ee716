using KvmActors.Sdk;

namespace KvmActors.Devices.PciHost;

/// <summary>A <c>pci-host</c>'s state: CONFIG_ADDRESS and each function's configuration space, by slot.</summary>
public sealed record PciHostState(uint Address, IReadOnlyDictionary<int, byte[]> Functions);

/// <summary>
/// PCI configuration mechanism #1 over bus 0 (ports 0xcf8-0xcff, offsets 0-7 of the range): CONFIG_ADDRESS
/// (enable bit 31, bus 23:16, device 15:11, function 10:8, register 7:2) at offset 0 and CONFIG_DATA at 4-7.
/// Device 0 is the host bridge (Intel 440FX, 8086:1237, class 0x060000, as on QEMU's pc machine; or with chipset q35
/// the Q35 MCH, 8086:29c0, as on QEMU's q35 machine); devices 1-31 are
/// the PCI functions the VM laid out. Only function 0 of each exists (header type 0, single-function).
/// </summary>
/// <remarks>
/// <para>As the PCI specification says, only 4-byte accesses at 0xcf8 reach CONFIG_ADDRESS; byte and word accesses
/// to 0xcf8-0xcfb are I/O cycles nobody claims (reads all ones, writes dropped), which also makes the
/// configuration-mechanism-#2 probe fail, as it should. CONFIG_ADDRESS reads back exactly as written.</para>
/// <para>CONFIG_DATA at 0xcfc + k reaches register (CONFIG_ADDRESS bits 7:0) | k, as in QEMU.</para>
/// <para>CONFIG_DATA: with the enable bit clear, another bus, a missing device or a function other than 0,
/// reads are all ones (vendor 0xffff: nothing here) and writes are dropped.</para>
/// </remarks>
public sealed class PciHostModel
{
    public const ulong AddressOffset = 0, DataOffset = 4;
    public const uint EnableBit = 0x8000_0000;
    public const ushort BridgeVendor = 0x8086, BridgeDevice = 0x1237, Q35BridgeDevice = 0x29c0;

    private readonly Dictionary<int, (PciConfigSpace Space, string? Device)> _slots = new();
    private readonly Dictionary<int, PciFunction> _functions = new();

    public uint Address { get; private set; }

    public PciHostModel(IEnumerable<PciFunction> functions, bool q35 = false)
    {
        // Revision 2 on the 440FX as QEMU gives it; the MCH's revision is 0 there.
        _slots[0] = (q35 ? new PciConfigSpace(BridgeVendor, Q35BridgeDevice, 0x060000, 0x00, [])
                         : new PciConfigSpace(BridgeVendor, BridgeDevice, 0x060000, 0x02, []), null);
        foreach (var f in functions)
        {
            _slots[f.Slot] = (PciConfigSpace.For(f), f.DeviceName);
            _functions[f.Slot] = f;
        }
        PublishMsi();
    }

    /// <summary>Tell each device with an MSI capability what it says now (after a write to it, and a restore).</summary>
    private void PublishMsi()
    {
        foreach (var (slot, f) in _functions)
            if (_slots[slot].Space.HasMsi) f.Msi.Publish(_slots[slot].Space.MsiConfig());
    }

    /// <summary>The configuration space of the function in <paramref name="slot"/> (null: none).</summary>
    public PciConfigSpace? Function(int slot) => _slots.TryGetValue(slot, out var s) ? s.Space : null;

    public ulong Read(ulong offset, int size)
    {
        var allOnes = size >= 8 ? ulong.MaxValue : (1UL << (size * 8)) - 1;
        if (offset == AddressOffset && size == 4) return Address;
        if (offset < DataOffset || Selected() is not { } f) return allOnes;
        var k = (int)(offset - DataOffset);
        var width = Math.Min(size, 4 - k); // an access running past 0xcff sees nothing there
        return f.Space.Read(Register | k, width) | (allOnes & ~((1UL << (width * 8)) - 1));
    }

    /// <summary>
    /// A write; returns the device whose BAR mappings it changed, with the new mappings (null: none changed,
    /// or the write landed nowhere).
    /// </summary>
    public (string Device, IReadOnlyList<PciBarMapping> Bars)? Write(ulong offset, int size, ulong value)
    {
        if (offset == AddressOffset && size == 4)
        {
            Address = (uint)value;
            return null;
        }
        if (offset < DataOffset || Selected() is not { } f) return null;
        var k = (int)(offset - DataOffset);
        var before = f.Space.Mappings();
        f.Space.Write(Register | k, Math.Min(size, 4 - k), (uint)value);
        if (f.Device is null) return null;
        if (f.Space.HasMsi && (Register | k) >= PciConfigSpace.MsiCap && (Register | k) < PciConfigSpace.MsiData + 2) PublishMsi();
        var after = f.Space.Mappings();
        return before.SequenceEqual(after) ? null : (f.Device, after);
    }

    /// <summary>Every device function with its mappings now (what a restored bridge tells the VM).</summary>
    public IEnumerable<(string Device, IReadOnlyList<PciBarMapping> Bars)> AllMappings() =>
        _slots.Values.Where(s => s.Device is not null).Select(s => (s.Device!, s.Space.Mappings()));

    public PciHostState Save() => new(Address, _slots.ToDictionary(s => s.Key, s => s.Value.Space.Save()));

    public void Restore(PciHostState state)
    {
        foreach (var slot in state.Functions.Keys)
            if (!_slots.ContainsKey(slot))
                throw new DeviceStateException($"pci-host state: a function in slot {slot}, where this VM has none (the PCI devices differ)");
        foreach (var (slot, bytes) in state.Functions) _slots[slot].Space.Restore(bytes);
        Address = state.Address;
        PublishMsi();
    }

    // Bits 1:0 of CONFIG_ADDRESS are reserved, but QEMU ORs them into the register offset with the data port's
    // offset, and kvm-unit-tests relies on it (pci_config_readw(dev, 2) writes register 2, then reads 0xcfc).
    private int Register => (int)(Address & 0xff);

    private (PciConfigSpace Space, string? Device)? Selected()
    {
        if ((Address & EnableBit) == 0 || ((Address >> 16) & 0xff) != 0 || ((Address >> 8) & 7) != 0) return null;
        return _slots.TryGetValue((int)((Address >> 11) & 0x1f), out var s) ? s : null;
    }
}

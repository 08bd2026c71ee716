using KvmActors.Sdk;

namespace KvmActors.Devices.PciHost;

/// <summary>
/// PCI configuration mechanism #1 with an empty bus: an address register (CONFIG_ADDRESS, offset 0 of the
/// 8-port window 0xcf8-0xcff) and a data window (CONFIG_DATA, offsets 4-7) behind which no device answers.
/// </summary>
/// <remarks>
/// <para>CONFIG_ADDRESS is a 32-bit register: a 4-byte write at offset 0 stores the value and a 4-byte read
/// returns it unchanged (the reserved bits are not masked; guests only check the enable bit round-trips).
/// As the PCI specification says, byte and word accesses to 0xcf8-0xcfb do not reach the register: they
/// are ordinary I/O cycles that nothing claims, so reads give all ones and writes are dropped. That also
/// makes the "configuration mechanism #2" probe (byte writes of 0 to 0xcf8/0xcfa, read back 0) fail, as it
/// should.</para>
/// <para>CONFIG_DATA: there are no devices, so every read returns all ones of the access width (vendor ID
/// 0xffff: "no device here") whatever the address register holds, and writes are dropped.</para>
/// </remarks>
public sealed class PciConfigNoDevices
{
    public const ulong AddressOffset = 0;
    public const ulong DataOffset = 4;
    public const uint EnableBit = 0x8000_0000;

    public uint Address { get; private set; }

    /// <summary>Takes a saved CONFIG_ADDRESS (any 32-bit value is one the guest could have written).</summary>
    public void Restore(uint address) => Address = address;

    public ulong Read(ulong offset, int size)
    {
        var allOnes = size >= 8 ? ulong.MaxValue : (1UL << (size * 8)) - 1;
        return offset == AddressOffset && size == 4 ? Address : allOnes;
    }

    /// <summary>Returns true if the write landed somewhere (only a 4-byte write to CONFIG_ADDRESS does).</summary>
    public bool Write(ulong offset, int size, ulong value)
    {
        if (offset != AddressOffset || size != 4) return false;
        Address = (uint)value;
        return true;
    }
}

using System.Buffers.Binary;
using System.Text;

namespace KvmActors.Runtime.Boot.Acpi;

/// <summary>
/// Where the ACPI tables go and which ports the FADT names: QEMU's <c>pc</c> machine (PIIX4 PM at 0x600).
/// <code>
///   0xe0000  RSDT      0xe0040  XSDT      0xe0080  FACS (64 bytes, 64-byte aligned)
///   0xe0100  FADT      0xe0200  MADT      0xe0400  DSDT
///   0xf0000  RSDP (ACPI 2.0, 36 bytes: found by scanning 0xe0000-0xfffff on 16-byte boundaries)
/// </code>
/// Everything lies in [0xe0000, 0xf0024): the BIOS area, below the 1 MiB where kernels load.
/// </summary>
public static class AcpiLayout
{
    public const ulong AreaStart = 0xe0000, AreaEnd = 0x100000;
    public const ulong Rsdt = 0xe0000, Xsdt = 0xe0040, Facs = 0xe0080, Fadt = 0xe0100, Madt = 0xe0200, Dsdt = 0xe0400, Rsdp = 0xf0000;

    /// <summary>PM1a event block (PM1_STS, PM1_EN: 4 ports), PM1a control (2 ports), PM timer (4 ports).</summary>
    public const ushort PmBase = 0x600, Pm1aEvent = PmBase, Pm1aControl = PmBase + 4, PmTimer = PmBase + 8;
    /// <summary>The SCI's ISA IRQ (QEMU: 9, level, active high).</summary>
    public const int SciIrq = 9;
    /// <summary>The SLP_TYP values the DSDT's \_S3 and \_S5 objects give (QEMU's: S3 = 1, S5 = 0).</summary>
    public const int SleepTypeS3 = 1, SleepTypeS5 = 0;
    public const uint LocalApicAddress = 0xfee00000, IoApicAddress = 0xfec00000;
}

/// <summary>One table's bytes and where it goes.</summary>
public sealed record AcpiTable(string Signature, ulong Address, byte[] Bytes);

/// <summary>
/// Builds the ACPI tables a PC guest looks for (RSDP, RSDT, XSDT, FADT, FACS, MADT, DSDT) for a VM of
/// <c>vcpus</c> processors, with checksums; pure code: the machine writes the result into guest memory.
/// </summary>
/// <remarks>
/// MADT: one enabled local APIC per vCPU (ACPI id = APIC id = index), the IOAPIC (id 0, GSI base 0), the
/// interrupt source overrides of QEMU's <c>pc</c> machine (ISA IRQ 0 → GSI 2; IRQs 5, 9, 10, 11 level,
/// active high) and a local APIC NMI on LINT1 for all processors. DSDT: only \_S3 and \_S5 packages
/// (AML), so a guest can read the sleep types; no devices.
/// </remarks>
public static class AcpiTables
{
    private const string OemId = "KVMACT", OemTableId = "KVMACTRS";

    public static IReadOnlyList<AcpiTable> Build(int vcpus)
    {
        if (vcpus is < 1 or > 255) throw new ArgumentOutOfRangeException(nameof(vcpus), vcpus, "1..255 vCPUs fit the MADT's 8-bit APIC ids");
        var dsdt = Dsdt();
        var facs = Facs();
        var fadt = Fadt();
        var madt = Madt(vcpus);
        var rsdt = Table("RSDT", 1, [.. U32(AcpiLayout.Fadt), .. U32(AcpiLayout.Madt)]);
        var xsdt = Table("XSDT", 1, [.. U64(AcpiLayout.Fadt), .. U64(AcpiLayout.Madt)]);
        return
        [
            new("RSD PTR ", AcpiLayout.Rsdp, Rsdp()),
            new("RSDT", AcpiLayout.Rsdt, rsdt),
            new("XSDT", AcpiLayout.Xsdt, xsdt),
            new("FACS", AcpiLayout.Facs, facs),
            new("FACP", AcpiLayout.Fadt, fadt),
            new("APIC", AcpiLayout.Madt, madt),
            new("DSDT", AcpiLayout.Dsdt, dsdt),
        ];
    }

    /// <summary>The 8-bit sum of <paramref name="bytes"/> (ACPI checksums make it 0).</summary>
    public static byte Sum(ReadOnlySpan<byte> bytes)
    {
        byte s = 0;
        foreach (var b in bytes) s += b;
        return s;
    }

    private static byte[] Rsdp()
    {
        var b = new byte[36];
        Encoding.ASCII.GetBytes("RSD PTR ").CopyTo(b, 0);
        Encoding.ASCII.GetBytes(OemId).CopyTo(b, 9);
        b[15] = 2; // revision: ACPI 2.0+, with the XSDT
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(16), (uint)AcpiLayout.Rsdt);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(20), 36);
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(24), AcpiLayout.Xsdt);
        b[8] = (byte)-Sum(b.AsSpan(0, 20));   // the ACPI 1.0 checksum covers the first 20 bytes
        b[32] = (byte)-Sum(b);                  // the extended checksum covers all 36
        return b;
    }

    private static byte[] Facs()
    {
        var b = new byte[64];
        Encoding.ASCII.GetBytes("FACS").CopyTo(b, 0);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(4), 64);
        b[32] = 1; // version; the waking vectors (offsets 12 and 24) start 0: the guest writes them
        return b;
    }

    private static byte[] Fadt()
    {
        // ACPI 2.0+ FADT (revision 3, 244 bytes): the 32-bit port fields and their 64-bit generic-address twins.
        var body = new byte[244 - 36];
        void W8(int at, byte v) => body[at - 36] = v;
        void W16(int at, ushort v) => BinaryPrimitives.WriteUInt16LittleEndian(body.AsSpan(at - 36), v);
        void W32(int at, uint v) => BinaryPrimitives.WriteUInt32LittleEndian(body.AsSpan(at - 36), v);
        void W64(int at, ulong v) => BinaryPrimitives.WriteUInt64LittleEndian(body.AsSpan(at - 36), v);
        // Generic address: space 1 (system I/O), bit width, offset 0, access size 1/2/3 (byte/word/dword), address.
        void Gas(int at, ushort port, byte bits) { W8(at, 1); W8(at + 1, bits); W8(at + 3, (byte)(bits switch { 8 => 1, 16 => 2, _ => 3 })); W64(at + 4, port); }
        W32(36, (uint)AcpiLayout.Facs);
        W32(40, (uint)AcpiLayout.Dsdt);
        W16(46, AcpiLayout.SciIrq);
        // SMI_CMD = 0: ACPI mode is always on (SCI_EN reads 1), nothing to enable.
        W32(56, AcpiLayout.Pm1aEvent);
        W32(64, AcpiLayout.Pm1aControl);
        W32(76, AcpiLayout.PmTimer);
        W8(88, 4);   // PM1_EVT_LEN
        W8(89, 2);   // PM1_CNT_LEN
        W8(91, 4);   // PM_TMR_LEN
        W16(96, 0x0fff);  // P_LVL2_LAT > 100: no C2
        W16(98, 0x0fff);  // P_LVL3_LAT > 1000: no C3
        W8(108, 0x32);    // CENTURY: the CMOS byte holding the century
        W16(109, 0);      // IAPC_BOOT_ARCH: no legacy devices promised beyond what the guest probes
        // Flags: WBINVD (bit 0), PROC_C1 (2), SLP_BUTTON (5: no sleep button), RESET_REG_SUP (10).
        W32(112, (1u << 0) | (1u << 2) | (1u << 5) | (1u << 10));
        Gas(116, 0xcf9, 8); // RESET_REG: port 0xcf9
        W8(128, 0x06);      // RESET_VALUE
        W64(132, AcpiLayout.Facs);
        W64(140, AcpiLayout.Dsdt);
        Gas(148, AcpiLayout.Pm1aEvent, 32);
        Gas(172, AcpiLayout.Pm1aControl, 16);
        Gas(208, AcpiLayout.PmTimer, 32);
        return Table("FACP", 3, body);
    }

    private static byte[] Madt(int vcpus)
    {
        var body = new List<byte>();
        body.AddRange(U32(AcpiLayout.LocalApicAddress));
        body.AddRange(U32(1)); // PCAT_COMPAT: there are 8259 PICs too
        for (var i = 0; i < vcpus; i++)
            body.AddRange([0, 8, (byte)i, (byte)i, .. U32(1)]);                   // local APIC, enabled
        body.AddRange([1, 12, 0, 0, .. U32(AcpiLayout.IoApicAddress), .. U32(0)]); // IOAPIC id 0, GSI base 0
        body.AddRange(Override(0, 2, 0));                                          // PIT IRQ 0 → GSI 2
        foreach (var irq in new byte[] { 5, AcpiLayout.SciIrq, 10, 11 })
            body.AddRange(Override(irq, irq, 0x000d));                             // level, active high
        body.AddRange([4, 6, 0xff, 0, 0, 1]);                                      // NMI on LINT1, all processors
        return Table("APIC", 3, [.. body]);

        static byte[] Override(byte source, uint gsi, ushort flags) => [2, 10, 0, source, .. U32(gsi), .. U16(flags)];
    }

    private static byte[] Dsdt()
    {
        // AML: Name (_S3_, Package (4) { 1, 1, 0, 0 }) and Name (_S5_, Package (4) { 0, 0, 0, 0 }).
        byte[] Sleep(char state, byte type) =>
            [0x08, (byte)'_', (byte)'S', (byte)state, (byte)'_', 0x12, 0x08, 0x04, 0x0a, type, 0x0a, type, 0x00, 0x00];
        return Table("DSDT", 2, [.. Sleep('3', AcpiLayout.SleepTypeS3), .. Sleep('5', AcpiLayout.SleepTypeS5)]);
    }

    /// <summary>A system description table: the 36-byte header, then <paramref name="body"/>, checksummed.</summary>
    private static byte[] Table(string signature, byte revision, byte[] body)
    {
        var b = new byte[36 + body.Length];
        Encoding.ASCII.GetBytes(signature).CopyTo(b, 0);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(4), (uint)b.Length);
        b[8] = revision;
        Encoding.ASCII.GetBytes(OemId).CopyTo(b, 10);
        Encoding.ASCII.GetBytes(OemTableId).CopyTo(b, 16);
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(24), 1);               // OEM revision
        Encoding.ASCII.GetBytes("KVMA").CopyTo(b, 28);                            // creator id
        BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(32), 1);               // creator revision
        body.CopyTo(b, 36);
        b[9] = (byte)-Sum(b);
        return b;
    }

    private static byte[] U16(ushort v) => BitConverter.GetBytes(v);
    private static byte[] U32(uint v) => BitConverter.GetBytes(v);
    private static byte[] U32(ulong v) => BitConverter.GetBytes(checked((uint)v));
    private static byte[] U64(ulong v) => BitConverter.GetBytes(v);
}

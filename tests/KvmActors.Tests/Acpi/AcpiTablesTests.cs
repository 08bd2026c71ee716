using System.Buffers.Binary;
using System.Text;
using KvmActors.Runtime.Boot.Acpi;
using Xunit;

namespace KvmActors.Tests.Acpi;

/// <summary>The ACPI tables, parsed back from a flat image of the BIOS area as a guest would walk them.</summary>
public sealed class AcpiTablesTests
{
    private static byte[] Area(int vcpus)
    {
        var area = new byte[AcpiLayout.AreaEnd - AcpiLayout.AreaStart];
        foreach (var t in AcpiTables.Build(vcpus))
            t.Bytes.CopyTo(area, (int)(t.Address - AcpiLayout.AreaStart));
        return area;
    }

    private static uint U32(byte[] m, ulong at) => BinaryPrimitives.ReadUInt32LittleEndian(m.AsSpan((int)(at - AcpiLayout.AreaStart)));
    private static ulong U64(byte[] m, ulong at) => BinaryPrimitives.ReadUInt64LittleEndian(m.AsSpan((int)(at - AcpiLayout.AreaStart)));
    private static string Sig(byte[] m, ulong at, int n = 4) => Encoding.ASCII.GetString(m, (int)(at - AcpiLayout.AreaStart), n);
    private static Span<byte> Table(byte[] m, ulong at) => m.AsSpan((int)(at - AcpiLayout.AreaStart), (int)U32(m, at + 4));

    private static ulong FindRsdp(byte[] m)
    {
        for (var a = AcpiLayout.AreaStart; a < AcpiLayout.AreaEnd; a += 16)
            if (Sig(m, a, 8) == "RSD PTR ") return a;
        throw new Xunit.Sdk.XunitException("no RSDP on a 16-byte boundary in 0xe0000-0xfffff");
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(8)]
    public void A_guest_finds_the_rsdp_and_every_table_with_right_checksums_and_contents(int vcpus)
    {
        var m = Area(vcpus);
        var rsdp = FindRsdp(m);
        Assert.Equal(0, AcpiTables.Sum(m.AsSpan((int)(rsdp - AcpiLayout.AreaStart), 20)));
        Assert.Equal(0, AcpiTables.Sum(m.AsSpan((int)(rsdp - AcpiLayout.AreaStart), 36)));
        Assert.Equal(2, m[rsdp - AcpiLayout.AreaStart + 15]);

        var rsdt = U32(m, rsdp + 16);
        var xsdt = U64(m, rsdp + 24);
        Assert.Equal("RSDT", Sig(m, rsdt));
        Assert.Equal("XSDT", Sig(m, xsdt));
        var fromRsdt = Enumerable.Range(0, (int)(U32(m, rsdt + 4) - 36) / 4).Select(i => (ulong)U32(m, rsdt + 36 + (ulong)i * 4)).ToList();
        var fromXsdt = Enumerable.Range(0, (int)(U32(m, xsdt + 4) - 36) / 8).Select(i => U64(m, xsdt + 36 + (ulong)i * 8)).ToList();
        Assert.Equal(fromRsdt, fromXsdt);
        Assert.Equal(["FACP", "APIC"], fromRsdt.Select(a => Sig(m, a)));
        foreach (var t in fromRsdt.Append(rsdt).Append(xsdt))
            Assert.True(AcpiTables.Sum(Table(m, t)) == 0, $"checksum of {Sig(m, t)}");

        // FADT: FACS, DSDT and the PM ports.
        var fadt = fromRsdt[0];
        Assert.Equal(244u, U32(m, fadt + 4));
        var facs = U32(m, fadt + 36);
        var dsdt = U32(m, fadt + 40);
        Assert.Equal("FACS", Sig(m, facs));
        Assert.Equal(0u, facs % 64);
        Assert.Equal(64u, U32(m, facs + 4));
        Assert.Equal("DSDT", Sig(m, dsdt));
        Assert.Equal(0, AcpiTables.Sum(Table(m, dsdt)));
        Assert.Equal((ulong)facs, U64(m, fadt + 132));
        Assert.Equal((ulong)dsdt, U64(m, fadt + 140));
        Assert.Equal(0x600u, U32(m, fadt + 56));  // PM1a_EVT_BLK
        Assert.Equal(0x604u, U32(m, fadt + 64));  // PM1a_CNT_BLK
        Assert.Equal(0x608u, U32(m, fadt + 76));  // PM_TMR_BLK
        Assert.Equal(0x608UL, U64(m, fadt + 208 + 4)); // X_PM_TMR_BLK address
        Assert.Equal(9, BinaryPrimitives.ReadUInt16LittleEndian(m.AsSpan((int)(fadt + 46 - AcpiLayout.AreaStart))));
        Assert.Contains("_S3_"u8.ToArray(), [Table(m, dsdt).Slice(37, 4).ToArray()], new BytesEq());

        // MADT: one local APIC per vCPU, the IOAPIC, ISA overrides.
        var madt = fromRsdt[1];
        Assert.Equal(0xfee00000u, U32(m, madt + 36));
        var entries = new List<(byte Type, byte[] Body)>();
        for (var at = madt + 44; at < madt + U32(m, madt + 4);)
        {
            var type = m[at - AcpiLayout.AreaStart];
            var len = m[at - AcpiLayout.AreaStart + 1];
            entries.Add((type, m.AsSpan((int)(at - AcpiLayout.AreaStart), len).ToArray()));
            at += len;
        }
        var lapics = entries.Where(e => e.Type == 0).ToList();
        Assert.Equal(Enumerable.Range(0, vcpus).Select(i => (byte)i), lapics.Select(e => e.Body[3]));
        Assert.All(lapics, e => Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(e.Body.AsSpan(4))));
        var ioapic = Assert.Single(entries, e => e.Type == 1);
        Assert.Equal(0xfec00000u, BinaryPrimitives.ReadUInt32LittleEndian(ioapic.Body.AsSpan(4)));
        var overrides = entries.Where(e => e.Type == 2).Select(e => (e.Body[3], BinaryPrimitives.ReadUInt32LittleEndian(e.Body.AsSpan(4)))).ToList();
        Assert.Contains(((byte)0, 2u), overrides);
        Assert.Contains(((byte)9, 9u), overrides);
    }

    [Fact]
    public void Every_table_lies_in_the_bios_area_without_overlapping_another()
    {
        var tables = AcpiTables.Build(8).OrderBy(t => t.Address).ToList();
        Assert.All(tables, t => Assert.InRange(t.Address + (ulong)t.Bytes.Length, AcpiLayout.AreaStart + 1, AcpiLayout.AreaEnd));
        for (var i = 1; i < tables.Count; i++)
            Assert.True(tables[i - 1].Address + (ulong)tables[i - 1].Bytes.Length <= tables[i].Address, $"{tables[i - 1].Signature} runs into {tables[i].Signature}");
    }

    private sealed class BytesEq : IEqualityComparer<byte[]>
    {
        public bool Equals(byte[]? a, byte[]? b) => a!.AsSpan().SequenceEqual(b);
        public int GetHashCode(byte[] o) => o.Length;
    }
}

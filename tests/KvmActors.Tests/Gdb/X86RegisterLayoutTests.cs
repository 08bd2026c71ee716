using System.Xml.Linq;
using KvmActors.Gdb;
using Xunit;

namespace KvmActors.Tests.Gdb;

public sealed class X86RegisterLayoutTests
{
    private static readonly X86RegisterFile Sample = new()
    {
        Rax = 0x1122334455667788, Rbx = 2, Rcx = 3, Rdx = 4, Rsi = 5, Rdi = 6, Rbp = 7, Rsp = 8,
        R8 = 9, R9 = 10, R10 = 11, R11 = 12, R12 = 13, R13 = 14, R14 = 15, R15 = 0xffff_ffff_ffff_ffff,
        Rip = 0xffff_8000_0000_1000, Rflags = 0x202, Cs = 0x8, Ss = 0x10, Ds = 0x18, Es = 0x20, Fs = 0x28, Gs = 0x30,
        FsBase = 0x7fff_0000_1000, GsBase = 0xffff_8880_0000_0000, Cr0 = 0x8005_0033, Cr2 = 0xdead_0000, Cr3 = 0x1000,
        Cr4 = 0x6f0, Cr8 = 0xf, Efer = 0xd01,
    };

    /// <summary>Sample cut to what a 32-bit layout can carry (upper halves zero, no cr8).</summary>
    private static readonly X86RegisterFile Sample32 = new()
    {
        Rax = 0x55667788, Rbx = 2, Rcx = 3, Rdx = 4, Rsi = 5, Rdi = 6, Rbp = 7, Rsp = 8,
        Rip = 0x1000, Rflags = 0x202, Cs = 0x8, Ss = 0x10, Ds = 0x18, Es = 0x20, Fs = 0x28, Gs = 0x30,
        FsBase = 0x1000, GsBase = 0x2000, Cr0 = 0x8000_0011, Cr2 = 0xdead_0000, Cr3 = 0x1000, Cr4 = 0x10, Efer = 0x1_0000_0500,
    };

    [Theory]
    [InlineData(X86Mode.Long64, 340)] // 17*8 + 7*4 + 8*10 (st0-7) + 8*4 + 2*8 (bases) + 6*8 (cr0,2,3,4,8, efer)
    [InlineData(X86Mode.Protected32, 208)] // 10*4 + 6*4 + 80 + 32 + 2*4 + 4*4 + 8
    [InlineData(X86Mode.Real16, 208)]
    public void The_g_packet_has_the_size_the_description_implies(X86Mode mode, int bytes)
    {
        var layout = X86RegisterLayout.For(mode);
        Assert.Equal(bytes, layout.GPacketBytes);
        Assert.Equal(bytes * 2, layout.SerializeG(Sample).Length);
        var regBits = XDocument.Parse(layout.TargetXml).Descendants("reg").Sum(r => int.Parse(r.Attribute("bitsize")!.Value));
        Assert.Equal(bytes * 8, regBits);
    }

    [Theory]
    [InlineData(X86Mode.Long64)]
    [InlineData(X86Mode.Protected32)]
    [InlineData(X86Mode.Real16)]
    public void The_description_lists_the_layouts_registers_in_order_numbered_from_0(X86Mode mode)
    {
        var layout = X86RegisterLayout.For(mode);
        var doc = XDocument.Parse(layout.TargetXml);
        Assert.Equal(layout.Architecture, doc.Root!.Element("architecture")!.Value);
        var regs = doc.Descendants("reg").ToList();
        Assert.Equal(layout.Registers.Select(r => r.Name), regs.Select(r => r.Attribute("name")!.Value));
        Assert.Equal(Enumerable.Range(0, regs.Count).Select(i => i.ToString()), regs.Select(r => r.Attribute("regnum")!.Value));
        // gdb's i386/amd64 require the core feature with the x87 registers in it.
        var core = doc.Descendants("feature").Single(f => f.Attribute("name")!.Value == "org.gnu.gdb.i386.core");
        Assert.Contains(core.Elements("reg"), r => r.Attribute("name")!.Value == "fop");
        Assert.Contains(doc.Descendants("feature"), f => f.Attribute("name")!.Value == "org.gnu.gdb.i386.segments");
    }

    [Fact]
    public void Architectures_per_mode()
    {
        Assert.Equal("i386:x86-64", X86RegisterLayout.For(X86Mode.Long64).Architecture);
        Assert.Equal("i386", X86RegisterLayout.For(X86Mode.Protected32).Architecture);
        Assert.Equal("i8086", X86RegisterLayout.For(X86Mode.Real16).Architecture);
    }

    [Fact]
    public void Long64_g_starts_rax_rbx_rcx_little_endian_and_serves_x87_as_unavailable()
    {
        var layout = X86RegisterLayout.For(X86Mode.Long64);
        var g = layout.SerializeG(Sample);
        Assert.StartsWith("8877665544332211" + "0200000000000000" + "0300000000000000", g);
        Assert.Equal(16, layout.PcRegister);
        Assert.Equal("001000000080ffff", g.Substring(16 * 16, 16)); // rip 0xffff800000001000
        // After 17 GPRs: eflags, then cs as a 32-bit value.
        Assert.Equal("02020000" + "08000000", g.Substring(17 * 16, 16));
        var x87 = 17 * 16 + 7 * 8;
        Assert.Equal(new string('x', (8 * 10 + 8 * 4) * 2), g.Substring(x87, (8 * 10 + 8 * 4) * 2));
    }

    [Fact]
    public void Protected32_uses_the_i386_register_order()
    {
        var layout = X86RegisterLayout.For(X86Mode.Protected32);
        Assert.Equal(["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", "eip", "eflags"], layout.Registers.Take(10).Select(r => r.Name));
        Assert.StartsWith("88776655" + "03000000" + "04000000" + "02000000", layout.SerializeG(Sample32));
        Assert.Equal(8, layout.PcRegister);
    }

    [Fact]
    public void Long64_g_then_G_round_trips_every_register()
    {
        var layout = X86RegisterLayout.For(X86Mode.Long64);
        var bytes = Hex.Decode(layout.SerializeG(Sample), allowUnavailable: true);
        Assert.Equal(Sample, layout.ParseG(bytes, new X86RegisterFile()));
    }

    [Theory]
    [InlineData(X86Mode.Protected32)]
    [InlineData(X86Mode.Real16)]
    public void Narrow_g_then_G_round_trips_and_keeps_upper_halves(X86Mode mode)
    {
        var layout = X86RegisterLayout.For(mode);
        var bytes = Hex.Decode(layout.SerializeG(Sample32), allowUnavailable: true);
        Assert.Equal(Sample32, layout.ParseG(bytes, new X86RegisterFile()));
        // A G from a 32-bit view must not zero the upper half of the real 64-bit state.
        var wide = Sample32 with { Rax = 0xaaaa_bbbb_0000_0000 | Sample32.Rax };
        Assert.Equal(wide, layout.ParseG(bytes, wide));
    }

    [Fact]
    public void G_with_more_bytes_than_the_layout_is_refused_and_fewer_writes_a_prefix()
    {
        var layout = X86RegisterLayout.For(X86Mode.Long64);
        Assert.Null(layout.ParseG(new byte[layout.GPacketBytes + 1], Sample));
        var firstOnly = new byte[8];
        firstOnly[0] = 0x42;
        Assert.Equal(Sample with { Rax = 0x42 }, layout.ParseG(firstOnly, Sample));
    }

    [Fact]
    public void P_and_p_address_registers_by_description_number()
    {
        var layout = X86RegisterLayout.For(X86Mode.Long64);
        Assert.Equal("001000000080ffff", layout.ReadRegister(16, Sample));
        var rip = layout.WriteRegister(16, [0x00, 0x7c, 0, 0, 0, 0, 0, 0], Sample);
        Assert.Equal(0x7c00UL, rip!.Rip);
        var efer = layout.Registers.Select((r, i) => (r, i)).Single(p => p.r.Name == "efer").i;
        Assert.Equal("010d000000000000", layout.ReadRegister(efer, Sample));
        Assert.Equal(new string('x', 20), layout.ReadRegister(layout.Registers.Select((r, i) => (r, i)).Single(p => p.r.Name == "st0").i, Sample));
    }

    [Fact]
    public void P_with_a_wrong_size_or_number_is_refused_and_x87_writes_are_dropped()
    {
        var layout = X86RegisterLayout.For(X86Mode.Long64);
        Assert.Null(layout.WriteRegister(16, [1, 2, 3, 4], Sample));
        Assert.Null(layout.WriteRegister(layout.Registers.Count, new byte[8], Sample));
        Assert.Null(layout.ReadRegister(-1, Sample));
        Assert.Null(layout.ReadRegister(layout.Registers.Count, Sample));
        var st0 = layout.Registers.Select((r, i) => (r, i)).Single(p => p.r.Name == "st0").i;
        Assert.Equal(Sample, layout.WriteRegister(st0, new byte[10], Sample));
    }

    [Fact]
    public void Writing_a_32_bit_register_keeps_the_upper_half()
    {
        var layout = X86RegisterLayout.For(X86Mode.Protected32);
        var regs = new X86RegisterFile { Rax = 0x1234_5678_0000_0000 };
        Assert.Equal(0x1234_5678_dead_beefUL, layout.WriteRegister(0, [0xef, 0xbe, 0xad, 0xde], regs)!.Rax);
    }
}

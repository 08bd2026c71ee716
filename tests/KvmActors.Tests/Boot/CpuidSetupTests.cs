using KvmActors.Runtime.Boot;
using KvmActors.Runtime.Kvm;
using Xunit;

namespace KvmActors.Tests.Boot;

/// <summary>The CPUID table builder over a hand-made "supported" list (no KVM).</summary>
public sealed class CpuidSetupTests
{
    private const uint SignificantIndex = 1;

    private static KvmCpuidEntry2[] Supported() =>
    [
        new() { Function = 0, Eax = 0xd, Ebx = 0x756e6547 },
        new() { Function = 1, Eax = 0x806c1, Ebx = 0x0a100800, Ecx = 0xfeda3203, Edx = 0x178bfbff },
        new() { Function = 7, Index = 0, Flags = SignificantIndex, Ebx = 0xffffffff, Ecx = 0xffffffff },
        new() { Function = 7, Index = 1, Flags = SignificantIndex, Ebx = 0xffffffff },
        new() { Function = 0xb, Index = 0, Flags = SignificantIndex, Eax = 1, Ebx = 1, Ecx = 0x100, Edx = 0x42 },
        new() { Function = 0xb, Index = 1, Flags = SignificantIndex, Eax = 4, Ebx = 1, Ecx = 0x201, Edx = 0x42 },
        new() { Function = 0xd, Index = 1, Flags = SignificantIndex, Eax = 0xf },
        new() { Function = 0x80000001, Edx = 0xffffffff },
    ];

    [Fact]
    public void Apic_id_goes_to_leaf_1_ebx_top_byte_and_every_leaf_0xB_edx()
    {
        var supported = Supported();
        var entries = CpuidSetup.Build(supported, apicId: 5);
        Assert.Equal(0x05100800u, CpuidSetup.Find(entries, 1)!.Value.Ebx);
        Assert.Equal(5u, CpuidSetup.Find(entries, 0xb, 0)!.Value.Edx);
        Assert.Equal(5u, CpuidSetup.Find(entries, 0xb, 1)!.Value.Edx);
        Assert.Equal(0x0a100800u, supported[1].Ebx); // the input is not modified
        Assert.Equal(supported.Length, entries.Length);
    }

    [Fact]
    public void Named_features_clear_their_bits_and_their_dependents()
    {
        var entries = CpuidSetup.Build(Supported(), 0, CpuidSetup.BitsFor(["x2apic", "XSAVE"]));
        var leaf1 = CpuidSetup.Find(entries, 1)!.Value;
        Assert.Equal(0u, leaf1.Ecx & (1u << 21));                    // x2apic
        Assert.Equal(0u, leaf1.Ecx & ((1u << 26) | (1u << 27)));     // xsave, osxsave
        Assert.Equal(0u, leaf1.Ecx & (1u << 28));                    // avx goes with xsave
        Assert.Equal(0u, CpuidSetup.Find(entries, 7, 0)!.Value.Ebx & (1u << 5)); // avx2
        Assert.Equal(0xffffffffu, CpuidSetup.Find(entries, 7, 1)!.Value.Ebx);   // other sub-leaf untouched
        Assert.Equal(0u, CpuidSetup.Find(entries, 0xd, 1)!.Value.Eax); // xsaveopt, xsavec, xgetbv1, xsaves go with xsave
        Assert.Equal(0xfeda3203u & ~((1u << 21) | (1u << 26) | (1u << 27) | (1u << 28) | (1u << 12) | (1u << 29)), leaf1.Ecx);
        Assert.Equal(0x178bfbffu, leaf1.Edx);
    }

    [Fact]
    public void Raw_bits_can_be_cleared_and_unknown_names_are_refused()
    {
        var entries = CpuidSetup.Build(Supported(), 0, [new CpuidBit(0x80000001, null, CpuidRegister.Edx, 26)]);
        Assert.Equal(0xffffffffu & ~(1u << 26), CpuidSetup.Find(entries, 0x80000001)!.Value.Edx);
        var e = Assert.Throws<ArgumentException>(() => CpuidSetup.BitsFor(["no-such-feature"]));
        Assert.Contains("x2apic", e.Message);
        Assert.Equal("CPUID.7.0:EBX[5]", new CpuidBit(7, 0, CpuidRegister.Ebx, 5).ToString());
    }

    [Fact]
    public void Apic_ids_above_255_need_leaf_0xB()
    {
        var noTopology = Supported().Where(e => e.Function != 0xb).ToArray();
        Assert.Throws<ArgumentOutOfRangeException>(() => CpuidSetup.Build(noTopology, 300));
        Assert.Equal(300u, CpuidSetup.Find(CpuidSetup.Build(Supported(), 300), 0xb)!.Value.Edx);
    }
}

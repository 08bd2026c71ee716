using System.Text;
using KvmActors.Runtime.Boot;
using KvmActors.Runtime.Kvm;
using Xunit;

namespace KvmActors.Tests.Boot;

/// <summary>CPU models and the feature table over a hand-made "supported" CPUID (no KVM).</summary>
public sealed class CpuModelTests
{
    private static KvmCpuidEntry2[] Supported() =>
    [
        new() { Function = 0, Eax = 0x1f, Ebx = 0x756e6547, Edx = 0x49656e69, Ecx = 0x6c65746e },
        new() { Function = 1, Eax = 0x906ea, Ecx = 0xf7fa3223, Edx = 0x0f8bfbff },
        new() { Function = 7, Index = 0, Flags = 1, Ebx = 0x029c67af, Ecx = 0x40000000, Edx = 0xbc000400 },
        new() { Function = 0xb, Index = 0, Flags = 1 },
        new() { Function = 0xd, Index = 1, Flags = 1, Eax = 0xf },
        new() { Function = 0x1f, Index = 0, Flags = 1 },
        new() { Function = 0x40000000, Eax = 0x40000001 },
        new() { Function = 0x80000000, Eax = 0x80000008 },
        new() { Function = 0x80000001, Ecx = 0x121, Edx = 0x2c100800 },
        new() { Function = 0x80000002 }, new() { Function = 0x80000003 }, new() { Function = 0x80000004 },
        new() { Function = 0x80000008, Eax = 0x3027 },
    ];

    private static KvmCpuidEntry2 Leaf(KvmCpuidEntry2[] e, uint leaf, uint sub = 0) => CpuidSetup.Find(e, leaf, sub)!.Value;

    private static string Vendor(KvmCpuidEntry2 l0) =>
        Encoding.ASCII.GetString([.. BitConverter.GetBytes(l0.Ebx), .. BitConverter.GetBytes(l0.Edx), .. BitConverter.GetBytes(l0.Ecx)]);

    [Fact]
    public void Host_is_the_supported_cpuid_unchanged()
    {
        var supported = Supported();
        Assert.Equal(supported, CpuModels.Build(supported, CpuidSpec.Default));
        Assert.Equal(supported, CpuModels.Build(supported, CpuidSpec.Default with { Model = "max" }));
    }

    [Fact]
    public void Qemu64_has_qemus_vendor_signature_brand_leaves_and_features_within_what_kvm_supports()
    {
        var e = CpuModels.Build(Supported(), new CpuidSpec { Model = "qemu64" });
        Assert.Equal("AuthenticAMD", Vendor(Leaf(e, 0)));
        Assert.Equal(0xdu, Leaf(e, 0).Eax);                       // level 0xd
        Assert.Equal(0x80000008u, Leaf(e, 0x80000000).Eax);       // min(xlevel 0x8000000a, what KVM has)
        Assert.DoesNotContain(e, x => x.Function == 0x1f);        // above the model's level
        Assert.Contains(e, x => x.Function == 0x40000000);        // KVM's own leaves stay
        Assert.Equal(CpuModels.Signature(6, 6, 3), Leaf(e, 1).Eax);
        var ecx = Leaf(e, 1).Ecx;
        // pni (bit 0) and cx16 (13) of the model, x2apic (21) as QEMU's KVM default, hypervisor (31); nothing else.
        Assert.Equal((1u << 0) | (1u << 13) | (1u << 21) | (1u << 31), ecx);
        Assert.Equal(0u, Leaf(e, 7).Ebx);
        Assert.Equal(0u, Leaf(e, 0xd, 1).Eax);
        // lm, syscall, nx, and leaf 1 EDX's AMD aliases in 0x80000001 EDX; lahf-lm in ECX (svm is not supported here).
        var edx = Leaf(e, 0x80000001).Edx;
        Assert.Equal(0x20100800u | (Leaf(e, 1).Edx & 0x0183f3ffu), edx);
        Assert.Equal(1u, Leaf(e, 0x80000001).Ecx);
        var brand = new byte[48];
        for (var i = 0; i < 3; i++)
        {
            var l = Leaf(e, 0x80000002 + (uint)i);
            foreach (var (r, o) in new[] { (l.Eax, 0), (l.Ebx, 4), (l.Ecx, 8), (l.Edx, 12) }) BitConverter.GetBytes(r).CopyTo(brand, i * 16 + o);
        }
        Assert.Equal("QEMU Virtual CPU version 2.5+", Encoding.ASCII.GetString(brand).TrimEnd('\0'));
    }

    [Fact]
    public void Plus_adds_a_supported_feature_minus_removes_it_and_what_needs_it_and_minus_wins()
    {
        var e = CpuModels.Build(Supported(), new CpuidSpec { Model = "qemu32", Add = ["avx2", "invpcid", "x2apic"], Remove = ["x2apic", "avx"] });
        Assert.NotEqual(0u, Leaf(e, 7).Ebx & (1u << 10));          // invpcid: added, and leaf 7 kept although qemu32's level is 4
        Assert.Equal(0u, Leaf(e, 7).Ebx & (1u << 5));              // avx2 needs avx, which is removed
        Assert.Equal(0u, Leaf(e, 1).Ecx & (1u << 21));             // -x2apic wins over +x2apic
        Assert.True(Leaf(e, 0).Eax >= 7);
        Assert.Equal("GenuineIntel", Vendor(Leaf(e, 0)));
    }

    [Fact]
    public void A_feature_kvm_does_not_support_cannot_be_added()
    {
        var e = Assert.Throws<CpuidRequestException>(() => CpuModels.Build(Supported(), new CpuidSpec { Add = ["la57"] }));
        Assert.Equal("la57", e.Feature);
        Assert.Contains("CPUID.7.0:ECX[16]", e.Message);
        Assert.Contains("KVM_GET_SUPPORTED_CPUID", e.Message);
    }

    [Fact]
    public void Overrides_apply_to_the_host_model_too()
    {
        var e = CpuModels.Build(Supported(), new CpuidSpec { Vendor = "KvmActorsCPU", Stepping = 1, Brand = "x" });
        Assert.Equal("KvmActorsCPU", Vendor(Leaf(e, 0)));
        Assert.Equal((6, 0x9e, 1), CpuModels.Decode(Leaf(e, 1).Eax)); // the host's family and model, stepping 1
        Assert.Equal((uint)'x', Leaf(e, 0x80000002).Eax);
    }

    [Theory]
    [InlineData("sse3", "pni")]
    [InlineData("SSE4_1", "sse4.1")]
    [InlineData("tsc_deadline_timer", "tsc-deadline")]
    [InlineData("xd", "nx")]
    [InlineData("avx512", "avx512f")]
    [InlineData("invpcid", "invpcid")]
    public void Linux_and_old_qemu_spellings_resolve_to_qemus_names(string name, string canonical) =>
        Assert.Equal(canonical, CpuidFeatures.Canonical(name));

    [Fact]
    public void The_table_names_each_bit_once_and_covers_the_four_leaves()
    {
        var names = CpuidFeatures.Names.ToList();
        Assert.Equal(names.Count, names.Distinct(StringComparer.OrdinalIgnoreCase).Count());
        Assert.Equal(new CpuidBit(1, null, CpuidRegister.Ecx, 21), CpuidFeatures.Bit("x2apic"));
        Assert.Equal(new CpuidBit(7, 0, CpuidRegister.Ebx, 10), CpuidFeatures.Bit("invpcid"));
        Assert.Equal(new CpuidBit(0x80000001, null, CpuidRegister.Edx, 29), CpuidFeatures.Bit("lm"));
        Assert.Equal(new CpuidBit(0xd, 1, CpuidRegister.Eax, 0), CpuidFeatures.Bit("xsaveopt"));
        Assert.Equal("pku", CpuidFeatures.NameOf(new CpuidBit(7, 0, CpuidRegister.Ecx, 3)));
    }

    [Fact]
    public void Signatures_encode_extended_family_and_model_as_the_sdm_does()
    {
        Assert.Equal(0x000906eau, CpuModels.Signature(6, 0x9e, 0xa));
        Assert.Equal(0x00a20f12u, CpuModels.Signature(0x19, 0x21, 2));
        Assert.Equal((0x19, 0x21, 2), CpuModels.Decode(0x00a20f12));
    }
}

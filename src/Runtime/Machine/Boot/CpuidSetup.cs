using KvmActors.Runtime.Kvm;

namespace KvmActors.Runtime.Boot;

public enum CpuidRegister { Eax, Ebx, Ecx, Edx }

/// <summary>One CPUID feature bit: leaf (EAX input), sub-leaf (ECX input, or null for "every sub-leaf"), register, bit.</summary>
public readonly record struct CpuidBit(uint Leaf, uint? Subleaf, CpuidRegister Register, int Bit)
{
    public override string ToString() => $"CPUID.{Leaf:X}{(Subleaf is { } s ? $".{s}" : "")}:{Register.ToString().ToUpperInvariant()}[{Bit}]";
}

/// <summary>
/// Turns KVM_GET_SUPPORTED_CPUID into one vCPU's CPUID: clears masked feature bits, writes the vCPU's APIC id
/// (leaf 1 EBX[31:24], EDX of every sub-leaf of leaves 0xB and 0x1F, and AMD's leaf 0x8000001E EAX),
/// and applies it with KVM_SET_CPUID2 (which belongs before the vCPU's first KVM_RUN).
/// </summary>
public static class CpuidSetup
{
    /// <summary>
    /// Named features that can be masked, with the bits they clear (Intel SDM vol. 2A, CPUID).
    /// Masking a feature also clears the features that depend on it (e.g. "xsave" takes AVX with it).
    /// </summary>
    public static IReadOnlyDictionary<string, IReadOnlyList<CpuidBit>> KnownFeatures { get; } = BuildKnown();

    private static Dictionary<string, IReadOnlyList<CpuidBit>> BuildKnown()
    {
        var leaf1 = (CpuidRegister r, int b) => new CpuidBit(1, null, r, b);
        var leaf7 = (CpuidRegister r, int b) => new CpuidBit(7, 0, r, b);
        var ext1 = (CpuidRegister r, int b) => new CpuidBit(0x80000001, null, r, b);

        CpuidBit avx = leaf1(CpuidRegister.Ecx, 28), fma = leaf1(CpuidRegister.Ecx, 12), f16c = leaf1(CpuidRegister.Ecx, 29);
        CpuidBit avx2 = leaf7(CpuidRegister.Ebx, 5), avx512f = leaf7(CpuidRegister.Ebx, 16);
        CpuidBit xsave = leaf1(CpuidRegister.Ecx, 26), osxsave = leaf1(CpuidRegister.Ecx, 27);
        CpuidBit xsaveopt = new(0xd, 1, CpuidRegister.Eax, 0), xsavec = new(0xd, 1, CpuidRegister.Eax, 1), xsaves = new(0xd, 1, CpuidRegister.Eax, 3);

        return new Dictionary<string, IReadOnlyList<CpuidBit>>(StringComparer.OrdinalIgnoreCase)
        {
            ["x2apic"] = [leaf1(CpuidRegister.Ecx, 21)],
            ["tsc-deadline"] = [leaf1(CpuidRegister.Ecx, 24)],
            ["xsave"] = [xsave, osxsave, xsaveopt, xsavec, xsaves, avx, fma, f16c, avx2, avx512f],
            ["avx"] = [avx, fma, f16c, avx2, avx512f],
            ["avx2"] = [avx2],
            ["avx512"] = [avx512f],
            ["cx16"] = [leaf1(CpuidRegister.Ecx, 13)],
            ["monitor"] = [leaf1(CpuidRegister.Ecx, 3)],
            ["vmx"] = [leaf1(CpuidRegister.Ecx, 5)],
            ["pcid"] = [leaf1(CpuidRegister.Ecx, 17)],
            ["rdrand"] = [leaf1(CpuidRegister.Ecx, 30)],
            ["rdseed"] = [leaf7(CpuidRegister.Ebx, 18)],
            ["pdpe1gb"] = [ext1(CpuidRegister.Edx, 26)],
            ["rdtscp"] = [ext1(CpuidRegister.Edx, 27)],
            ["la57"] = [leaf7(CpuidRegister.Ecx, 16)],
            ["pku"] = [leaf7(CpuidRegister.Ecx, 3)],
        };
    }

    /// <summary>The bits a list of feature names clears; unknown names throw <see cref="ArgumentException"/> listing the known ones.</summary>
    public static IReadOnlyList<CpuidBit> BitsFor(IEnumerable<string> featureNames)
    {
        var bits = new List<CpuidBit>();
        foreach (var name in featureNames)
        {
            if (!KnownFeatures.TryGetValue(name.Trim(), out var b))
                throw new ArgumentException($"unknown CPUID feature '{name}'; known: {string.Join(", ", KnownFeatures.Keys.Order())}", nameof(featureNames));
            bits.AddRange(b);
        }
        return bits.Distinct().ToList();
    }

    /// <summary>
    /// One vCPU's CPUID table: a copy of <paramref name="supported"/> with <paramref name="clear"/> cleared
    /// and <paramref name="apicId"/> written into leaf 1 EBX[31:24], leaves 0xB/0x1F EDX and leaf 0x8000001E EAX.
    /// </summary>
    public static KvmCpuidEntry2[] Build(IReadOnlyList<KvmCpuidEntry2> supported, uint apicId, IEnumerable<CpuidBit>? clear = null)
    {
        if (apicId > 0xff && !supported.Any(e => e.Function == 0xb))
            throw new ArgumentOutOfRangeException(nameof(apicId), apicId, "APIC ids above 255 need CPUID leaf 0xB");
        var entries = supported.ToArray();
        var mask = clear?.ToList() ?? [];
        for (var i = 0; i < entries.Length; i++)
        {
            ref var e = ref entries[i];
            foreach (var bit in mask)
            {
                if (e.Function != bit.Leaf || (bit.Subleaf is { } sub && e.Index != sub)) continue;
                var m = ~(1u << bit.Bit);
                switch (bit.Register)
                {
                    case CpuidRegister.Eax: e.Eax &= m; break;
                    case CpuidRegister.Ebx: e.Ebx &= m; break;
                    case CpuidRegister.Ecx: e.Ecx &= m; break;
                    case CpuidRegister.Edx: e.Edx &= m; break;
                }
            }
            switch (e.Function)
            {
                case 1:
                    e.Ebx = (e.Ebx & 0x00ffffffu) | ((apicId & 0xff) << 24);
                    break;
                case 0xb:
                case 0x1f:
                    e.Edx = apicId;
                    break;
                case 0x8000001e: // AMD: extended APIC id
                    e.Eax = apicId;
                    break;
            }
        }
        return entries;
    }

    /// <summary>Build with <see cref="Build"/> and apply with KVM_SET_CPUID2; the APIC id is the vCPU id.</summary>
    public static KvmCpuidEntry2[] Apply(KvmVcpu vcpu, IReadOnlyList<KvmCpuidEntry2> supported, IEnumerable<string>? maskedFeatures = null)
    {
        var entries = Build(supported, (uint)vcpu.Id, maskedFeatures is null ? null : BitsFor(maskedFeatures));
        vcpu.SetCpuid(entries);
        return entries;
    }

    /// <summary>Look up one entry (leaf, sub-leaf), for tests and diagnostics.</summary>
    public static KvmCpuidEntry2? Find(IReadOnlyList<KvmCpuidEntry2> entries, uint leaf, uint subleaf = 0) =>
        entries.Cast<KvmCpuidEntry2?>().FirstOrDefault(e => e!.Value.Function == leaf && (e.Value.Index == subleaf || (e.Value.Flags & 1) == 0));
}

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
    /// Every named feature (<see cref="CpuidFeatures"/>) with the bits masking it clears: its own and those of the
    /// features that need it (e.g. "xsave" takes AVX with it).
    /// </summary>
    public static IReadOnlyDictionary<string, IReadOnlyList<CpuidBit>> KnownFeatures { get; } =
        CpuidFeatures.Names.ToDictionary(n => n, n => (IReadOnlyList<CpuidBit>)CpuidFeatures.WithDependents(n).Select(CpuidFeatures.Bit).ToList(),
            StringComparer.OrdinalIgnoreCase);

    /// <summary>One register of an entry.</summary>
    public static uint Get(in KvmCpuidEntry2 e, CpuidRegister r) => r switch
    {
        CpuidRegister.Eax => e.Eax,
        CpuidRegister.Ebx => e.Ebx,
        CpuidRegister.Ecx => e.Ecx,
        _ => e.Edx,
    };

    /// <summary>A copy of <paramref name="e"/> with register <paramref name="r"/> set to <paramref name="value"/>.</summary>
    public static KvmCpuidEntry2 With(KvmCpuidEntry2 e, CpuidRegister r, uint value)
    {
        switch (r)
        {
            case CpuidRegister.Eax: e.Eax = value; break;
            case CpuidRegister.Ebx: e.Ebx = value; break;
            case CpuidRegister.Ecx: e.Ecx = value; break;
            default: e.Edx = value; break;
        }
        return e;
    }

    /// <summary>The bits a list of feature names clears; unknown names throw <see cref="ArgumentException"/> listing the known ones.</summary>
    public static IReadOnlyList<CpuidBit> BitsFor(IEnumerable<string> featureNames)
    {
        var bits = new List<CpuidBit>();
        foreach (var name in featureNames)
        {
            if (CpuidFeatures.Canonical(name) is not { } known)
                throw new ArgumentException($"unknown CPUID feature '{name}'; known: {string.Join(", ", CpuidFeatures.Names)}", nameof(featureNames));
            bits.AddRange(KnownFeatures[known]);
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
                e = With(e, bit.Register, Get(e, bit.Register) & ~(1u << bit.Bit));
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

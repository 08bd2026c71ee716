using KvmActors.Runtime.Boot;
using KvmActors.Runtime.Kvm;

namespace KvmActors.Runtime.Snapshot;

/// <summary>
/// Whether this host's KVM can run a vCPU with a saved CPUID: every feature bit the guest was shown must be one
/// KVM_GET_SUPPORTED_CPUID offers here, or the guest would use an instruction the new host cannot give it.
/// </summary>
public static class CpuidCompatibility
{
    /// <summary>The feature registers compared: leaf 1 ECX/EDX, leaf 7.0 EBX/ECX/EDX, leaf 0x80000001 ECX/EDX.</summary>
    private static readonly (uint Leaf, uint? Subleaf, CpuidRegister Register)[] FeatureRegisters =
    [
        (1, null, CpuidRegister.Ecx), (1, null, CpuidRegister.Edx),
        (7, 0, CpuidRegister.Ebx), (7, 0, CpuidRegister.Ecx), (7, 0, CpuidRegister.Edx),
        (0x80000001, null, CpuidRegister.Ecx), (0x80000001, null, CpuidRegister.Edx),
    ];

    /// <summary>
    /// Bits KVM sets in a vCPU's CPUID from the guest's own control registers (leaf 1 ECX[27] OSXSAVE from
    /// CR4.OSXSAVE, leaf 7.0 ECX[4] OSPKE from CR4.PKE): not features of the host, never in the supported table.
    /// </summary>
    private static readonly CpuidBit[] GuestControlledBits =
        [new(1, null, CpuidRegister.Ecx, 27), new(7, 0, CpuidRegister.Ecx, 4)];

    /// <summary>Null if every saved feature bit is supported, else a reason naming leaf, register and bits.</summary>
    public static string? Check(IReadOnlyList<KvmCpuidEntry2> saved, IReadOnlyList<KvmCpuidEntry2> supported)
    {
        var problems = new List<string>();
        foreach (var (leaf, subleaf, register) in FeatureRegisters)
        {
            if (Find(saved, leaf, subleaf) is not { } mine) continue;
            var have = Find(supported, leaf, subleaf) is { } theirs ? Value(theirs, register) : 0;
            var missing = Value(mine, register) & ~have & ~GuestControlled(leaf, subleaf, register);
            if (missing == 0) continue;
            var bits = Enumerable.Range(0, 32).Where(b => (missing & (1u << b)) != 0)
                .Select(b => Describe(new CpuidBit(leaf, subleaf, register, b)));
            problems.Add($"CPUID leaf 0x{leaf:x}{(subleaf is { } s ? $".{s}" : "")} {register.ToString().ToUpperInvariant()} bits 0x{missing:x8} ({string.Join(", ", bits)})");
        }
        return problems.Count == 0
            ? null
            : $"the saved vCPU uses CPU features this host's KVM does not offer: {string.Join("; ", problems)}";
    }

    private static KvmCpuidEntry2? Find(IReadOnlyList<KvmCpuidEntry2> table, uint leaf, uint? subleaf)
    {
        foreach (var e in table)
            if (e.Function == leaf && (subleaf is null || e.Index == subleaf)) return e;
        return null;
    }

    private static uint Value(in KvmCpuidEntry2 e, CpuidRegister r) => r switch
    {
        CpuidRegister.Eax => e.Eax,
        CpuidRegister.Ebx => e.Ebx,
        CpuidRegister.Ecx => e.Ecx,
        _ => e.Edx,
    };

    private static uint GuestControlled(uint leaf, uint? subleaf, CpuidRegister register) =>
        GuestControlledBits.Where(b => b.Leaf == leaf && b.Subleaf == subleaf && b.Register == register)
            .Aggregate(0u, (mask, b) => mask | (1u << b.Bit));

    /// <summary>"bit 5 = avx2" where the bit is the one a known feature name stands for.</summary>
    private static string Describe(CpuidBit bit)
    {
        var name = CpuidSetup.KnownFeatures.FirstOrDefault(f => f.Value.Count > 0 && f.Value[0] == bit).Key;
        return name is null ? $"bit {bit.Bit}" : $"bit {bit.Bit} = {name}";
    }
}

using System.Text;
using KvmActors.Runtime.Kvm;

namespace KvmActors.Runtime.Boot;

/// <summary>What a guest file asks of its CPUID (<c>guest.cpuid</c>); names are canonical (<see cref="CpuidFeatures"/>).</summary>
public sealed record CpuidSpec
{
    /// <summary>A <see cref="CpuModels"/> name: host and max are KVM's supported CPUID as it is.</summary>
    public string Model { get; init; } = CpuModels.Host;
    /// <summary>Overrides of the model's: the 12-character vendor string, family, model number, stepping, brand string.</summary>
    public string? Vendor { get; init; }
    public int? Family { get; init; }
    public int? ModelNumber { get; init; }
    public int? Stepping { get; init; }
    public string? Brand { get; init; }
    /// <summary>Features forced on (each must be in KVM's supported CPUID) and off (with what needs them); off wins, as in QEMU.</summary>
    public IReadOnlyList<string> Add { get; init; } = [];
    public IReadOnlyList<string> Remove { get; init; } = [];
    /// <summary>The file (or --set) that asked for <see cref="Add"/>, named when this host cannot give a feature.</summary>
    public string Source { get; init; } = "";

    public static readonly CpuidSpec Default = new();
}

/// <summary>A named CPU model as QEMU defines it (target/i386/cpu.c, builtin_x86_defs).</summary>
public sealed record CpuModel(string Name, string Vendor, int Family, int Model, int Stepping, uint Level, uint XLevel, string Brand, string[] Features);

/// <summary>A CPUID request this host's KVM cannot meet: the feature (as written) and why.</summary>
public sealed class CpuidRequestException(string feature, string message) : KvmActorsException(ErrorKind.Config, message)
{
    public string Feature { get; } = feature;
}

/// <summary>
/// CPU models (QEMU's <c>-cpu</c>): <c>host</c> and <c>max</c> are KVM_GET_SUPPORTED_CPUID as it is; a named model
/// replaces the feature words of <see cref="CpuidFeatures.Words"/> by its own features (those KVM supports: QEMU
/// drops the others with a warning), its vendor, signature (family/model/stepping), brand string and highest leaves.
/// Named models get what QEMU gives them under KVM (kvm_default_props): x2apic on; monitor, svm and acpi off; and the
/// hypervisor bit. Other leaves (caches, topology, XSAVE sizes, KVM's 0x40000000 range) stay KVM's.
/// </summary>
public static class CpuModels
{
    public const string Host = "host", Max = "max";
    public const string Intel = "GenuineIntel", Amd = "AuthenticAMD";

    // QEMU's PPRO_FEATURES.
    private static readonly string[] Ppro =
        ["fpu", "de", "pse", "tsc", "msr", "mce", "cx8", "pge", "cmov", "pat", "fxsr", "mmx", "sse", "sse2", "pae", "sep", "apic"];
    // What QEMU's KVM accelerator turns on in every model (kvm_default_props), and the leaf 1 ECX bit it always sets.
    private static readonly string[] KvmDefaults = ["x2apic", "hypervisor"];
    // A flag KVM leaves to the VMM (QEMU sets it itself): never missing from the supported set.
    private static readonly string[] AlwaysAvailable = ["hypervisor"];
    private const string QemuBrand = "QEMU Virtual CPU version 2.5+";

    public static IReadOnlyList<CpuModel> Named { get; } =
    [
        new("qemu64", Amd, 6, 6, 3, 0xd, 0x8000000a, QemuBrand,
            [.. Ppro, "mtrr", "clflush", "mca", "pse36", "pni", "cx16", "lm", "syscall", "nx", "lahf-lm", .. KvmDefaults]),
        new("kvm64", Intel, 15, 6, 1, 0xd, 0x80000008, "Common KVM processor",
            [.. Ppro, "vme", "mtrr", "clflush", "mca", "pse36", "pni", "cx16", "lm", "syscall", "nx", .. KvmDefaults]),
        new("qemu32", Intel, 6, 6, 3, 4, 0x80000004, QemuBrand, [.. Ppro, "pni", .. KvmDefaults]),
        new("kvm32", Intel, 15, 6, 1, 5, 0x80000008, "Common 32-bit KVM processor",
            [.. Ppro, "vme", "mtrr", "clflush", "mca", "pse36", "pni", .. KvmDefaults]),
        new("Nehalem", Intel, 6, 26, 3, 11, 0x80000008, "Intel Core i7 9xx (Nehalem Class Core i7)",
            [.. Ppro, "vme", "clflush", "pse36", "mca", "mtrr", "popcnt", "sse4.2", "sse4.1", "cx16", "ssse3", "pni",
             "lm", "syscall", "nx", "lahf-lm", .. KvmDefaults]),
    ];

    /// <summary>Every model name <c>guest.cpuid.model</c> takes.</summary>
    public static IEnumerable<string> Names => new[] { Host, Max }.Concat(Named.Select(m => m.Name));

    /// <summary>The model's own spelling of <paramref name="name"/> (case-insensitive), or null.</summary>
    public static string? Find(string name) =>
        Names.FirstOrDefault(n => string.Equals(n, name, StringComparison.OrdinalIgnoreCase));

    /// <summary>Leaf 1 EAX for a family, model and stepping (Intel SDM vol. 2A, CPUID: extended family above 15, extended model).</summary>
    public static uint Signature(int family, int model, int stepping)
    {
        var eax = family > 0xf ? 0xf00u | ((uint)(family - 0xf) << 20) : (uint)family << 8;
        return eax | ((uint)model & 0xf) << 4 | ((uint)model >> 4) << 16 | ((uint)stepping & 0xf);
    }

    /// <summary>Family, model and stepping of a leaf 1 EAX.</summary>
    public static (int Family, int Model, int Stepping) Decode(uint eax)
    {
        var family = (int)((eax >> 8) & 0xf);
        var model = (int)((eax >> 4) & 0xf);
        if (family == 0xf) family += (int)((eax >> 20) & 0xff);
        if (family is 6 or >= 0xf) model |= (int)((eax >> 16) & 0xf) << 4;
        return (family, model, (int)(eax & 0xf));
    }

    /// <summary>
    /// The CPUID every vCPU starts from (before its APIC id): <paramref name="supported"/> shaped by <paramref name="spec"/>.
    /// A feature forced on that KVM does not support throws <see cref="CpuidRequestException"/>.
    /// </summary>
    public static KvmCpuidEntry2[] Build(IReadOnlyList<KvmCpuidEntry2> supported, CpuidSpec spec)
    {
        foreach (var add in spec.Add)
        {
            var bit = CpuidFeatures.Bit(add);
            if (!AlwaysAvailable.Contains(add) && !CpuidFeatures.IsSet(supported, bit))
                throw new CpuidRequestException(add,
                    $"'+{add}' asks for {bit}, which this host's KVM does not support (KVM_GET_SUPPORTED_CPUID); remove it or run on a host that has it");
        }
        var entries = supported.ToList();
        var model = Named.FirstOrDefault(m => string.Equals(m.Name, spec.Model, StringComparison.OrdinalIgnoreCase));
        var words = CpuidFeatures.Words.ToDictionary(w => w, w => Read(supported, w));
        if (model is not null)
            foreach (var w in CpuidFeatures.Words)
                words[w] = (words[w] | Mask(w, AlwaysAvailable)) & Mask(w, model.Features);
        foreach (var w in CpuidFeatures.Words)
            words[w] |= Mask(w, spec.Add);
        var removed = spec.Remove.SelectMany(CpuidFeatures.WithDependents).ToList();
        foreach (var w in CpuidFeatures.Words)
            words[w] &= ~Mask(w, removed);
        var vendor = spec.Vendor ?? model?.Vendor;
        // QEMU's AMD aliases: on an AMD model leaf 0x80000001 EDX repeats leaf 1 EDX's bits 0-9, 12-17, 23, 24.
        if (model is not null && vendor == Amd)
        {
            const uint amdAliases = 0x0183f3ff;
            var edx1 = CpuidFeatures.Words.First(w => w.Leaf == 1 && w.Register == CpuidRegister.Edx);
            var edxExt = CpuidFeatures.Words.First(w => w.Leaf == 0x80000001 && w.Register == CpuidRegister.Edx);
            words[edxExt] = (words[edxExt] & ~amdAliases) | (words[edx1] & amdAliases);
        }

        if (model is not null)
        {
            // A named model's highest leaves, raised where a forced feature needs a leaf above them (as QEMU does).
            var level = model.Level;
            foreach (var w in CpuidFeatures.Words.Where(w => w.Leaf < 0x80000000 && words[w] != 0)) level = Math.Max(level, w.Leaf);
            var xlevel = model.XLevel;
            entries.RemoveAll(e => (e.Function > level && e.Function < 0x40000000) || (e.Function > xlevel && e.Function >= 0x80000000 && e.Function < 0x8000ffff));
            Update(entries, 0, null, e => { e.Eax = Math.Min(e.Eax, level); return e; });
            Update(entries, 0x80000000, null, e => { e.Eax = Math.Min(e.Eax, xlevel); return e; });
        }
        foreach (var w in CpuidFeatures.Words)
        {
            var value = words[w];
            Update(entries, w.Leaf, w.Subleaf, e => CpuidSetup.With(e, w.Register, value));
        }

        if (vendor is not null)
        {
            var v = Encoding.ASCII.GetBytes(vendor);
            uint Part(int i) => BitConverter.ToUInt32(v, i);
            Update(entries, 0, null, e => { e.Ebx = Part(0); e.Edx = Part(4); e.Ecx = Part(8); return e; });
            Update(entries, 0x80000000, null, e => { e.Ebx = Part(0); e.Edx = Part(4); e.Ecx = Part(8); return e; });
        }
        var leaf1 = entries.FirstOrDefault(e => e.Function == 1);
        var (family, number, stepping) = Decode(leaf1.Eax);
        if (model is not null) (family, number, stepping) = (model.Family, model.Model, model.Stepping);
        var signature = Signature(spec.Family ?? family, spec.ModelNumber ?? number, spec.Stepping ?? stepping);
        if (model is not null || spec.Family is not null || spec.ModelNumber is not null || spec.Stepping is not null)
        {
            Update(entries, 1, null, e => { e.Eax = signature; return e; });
            Update(entries, 0x80000001, null, e => { e.Eax = signature; return e; });
        }
        if ((spec.Brand ?? model?.Brand) is { } brand)
        {
            var bytes = new byte[48];
            Encoding.ASCII.GetBytes(brand, bytes);
            for (uint i = 0; i < 3; i++)
            {
                var o = (int)i * 16;
                Update(entries, 0x80000002 + i, null, e =>
                {
                    e.Eax = BitConverter.ToUInt32(bytes, o); e.Ebx = BitConverter.ToUInt32(bytes, o + 4);
                    e.Ecx = BitConverter.ToUInt32(bytes, o + 8); e.Edx = BitConverter.ToUInt32(bytes, o + 12);
                    return e;
                });
            }
        }
        return entries.ToArray();
    }

    /// <summary>Changes every entry of <paramref name="leaf"/> (only sub-leaf <paramref name="subleaf"/> when given).</summary>
    private static void Update(List<KvmCpuidEntry2> entries, uint leaf, uint? subleaf, Func<KvmCpuidEntry2, KvmCpuidEntry2> change)
    {
        for (var i = 0; i < entries.Count; i++)
            if (entries[i].Function == leaf && (subleaf is not { } s || entries[i].Index == s))
                entries[i] = change(entries[i]);
    }

    private static uint Read(IReadOnlyList<KvmCpuidEntry2> entries, CpuidFeatures.Word w)
    {
        foreach (var e in entries)
            if (e.Function == w.Leaf && (w.Subleaf is not { } s || e.Index == s))
                return CpuidSetup.Get(e, w.Register);
        return 0;
    }

    private static uint Mask(CpuidFeatures.Word w, IEnumerable<string> names)
    {
        uint mask = 0;
        foreach (var n in names)
        {
            var bit = CpuidFeatures.Bit(n);
            if (bit.Leaf == w.Leaf && bit.Subleaf == w.Subleaf && bit.Register == w.Register) mask |= 1u << bit.Bit;
        }
        return mask;
    }
}

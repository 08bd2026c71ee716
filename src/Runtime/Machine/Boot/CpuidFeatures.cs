namespace KvmActors.Runtime.Boot;

/// <summary>
/// CPUID feature bits by the names QEMU's <c>-cpu</c> takes (target/i386/cpu.c, feature_word_info), with the
/// Linux spellings (/proc/cpuinfo, arch/x86/include/asm/cpufeatures.h) as aliases: leaf 1 ECX/EDX, leaf 7
/// sub-leaf 0 EBX/ECX/EDX, leaf 0x80000001 ECX/EDX and leaf 0xD sub-leaf 1 EAX. Names are case-insensitive and
/// '_' counts as '-' (QEMU accepts both).
/// </summary>
public static class CpuidFeatures
{
    /// <summary>A feature word: one register of one (leaf, sub-leaf); the names of its 32 bits (null: unnamed).</summary>
    public sealed record Word(uint Leaf, uint? Subleaf, CpuidRegister Register, string?[] Names);

    public static IReadOnlyList<Word> Words { get; } =
    [
        new(1, null, CpuidRegister.Edx,
        [
            "fpu", "vme", "de", "pse", "tsc", "msr", "pae", "mce",
            "cx8", "apic", null, "sep", "mtrr", "pge", "mca", "cmov",
            "pat", "pse36", "pn", "clflush", null, "ds", "acpi", "mmx",
            "fxsr", "sse", "sse2", "ss", "ht", "tm", "ia64", "pbe",
        ]),
        new(1, null, CpuidRegister.Ecx,
        [
            "pni", "pclmulqdq", "dtes64", "monitor", "ds-cpl", "vmx", "smx", "est",
            "tm2", "ssse3", "cid", null, "fma", "cx16", "xtpr", "pdcm",
            null, "pcid", "dca", "sse4.1", "sse4.2", "x2apic", "movbe", "popcnt",
            "tsc-deadline", "aes", "xsave", "osxsave", "avx", "f16c", "rdrand", "hypervisor",
        ]),
        new(7, 0, CpuidRegister.Ebx,
        [
            "fsgsbase", "tsc-adjust", "sgx", "bmi1", "hle", "avx2", null, "smep",
            "bmi2", "erms", "invpcid", "rtm", null, null, "mpx", null,
            "avx512f", "avx512dq", "rdseed", "adx", "smap", "avx512ifma", "pcommit", "clflushopt",
            "clwb", "intel-pt", "avx512pf", "avx512er", "avx512cd", "sha-ni", "avx512bw", "avx512vl",
        ]),
        new(7, 0, CpuidRegister.Ecx,
        [
            null, "avx512vbmi", "umip", "pku", "ospke", "waitpkg", "avx512vbmi2", null,
            "gfni", "vaes", "vpclmulqdq", "avx512vnni", "avx512bitalg", null, "avx512-vpopcntdq", null,
            "la57", null, null, null, null, null, "rdpid", null,
            "bus-lock-detect", "cldemote", null, "movdiri", "movdir64b", null, "sgxlc", "pks",
        ]),
        new(7, 0, CpuidRegister.Edx,
        [
            null, null, "avx512-4vnniw", "avx512-4fmaps", "fsrm", null, null, null,
            "avx512-vp2intersect", null, "md-clear", null, null, null, "serialize", null,
            "tsx-ldtrk", null, null, "arch-lbr", null, null, "amx-bf16", "avx512-fp16",
            "amx-tile", "amx-int8", "spec-ctrl", "stibp", "flush-l1d", "arch-capabilities", "core-capability", "ssbd",
        ]),
        // Leaf 0x80000001 EDX repeats most of leaf 1 EDX on AMD (QEMU's "AMD aliases"); only its own bits are named.
        new(0x80000001, null, CpuidRegister.Edx,
        [
            null, null, null, null, null, null, null, null,
            null, null, null, "syscall", null, null, null, null,
            null, null, null, null, "nx", null, "mmxext", null,
            null, "fxsr-opt", "pdpe1gb", "rdtscp", null, "lm", "3dnowext", "3dnow",
        ]),
        new(0x80000001, null, CpuidRegister.Ecx,
        [
            "lahf-lm", "cmp-legacy", "svm", "extapic", "cr8legacy", "abm", "sse4a", "misalignsse",
            "3dnowprefetch", "osvw", "ibs", "xop", "skinit", "wdt", null, "lwp",
            "fma4", "tce", null, "nodeid-msr", null, "tbm", "topoext", "perfctr-core",
            "perfctr-nb", null, null, null, null, null, null, null,
        ]),
        new(0xd, 1, CpuidRegister.Eax,
        [
            "xsaveopt", "xsavec", "xgetbv1", "xsaves", "xfd", null, null, null,
            null, null, null, null, null, null, null, null,
            null, null, null, null, null, null, null, null,
            null, null, null, null, null, null, null, null,
        ]),
    ];

    /// <summary>Other spellings (Linux's, QEMU's older ones) of the names above.</summary>
    private static readonly Dictionary<string, string> Aliases = new(StringComparer.OrdinalIgnoreCase)
    {
        ["sse3"] = "pni", ["sse4-1"] = "sse4.1", ["sse4-2"] = "sse4.2", ["tsc-deadline-timer"] = "tsc-deadline",
        ["xd"] = "nx", ["i64"] = "lm", ["ffxsr"] = "fxsr-opt", ["lahf"] = "lahf-lm", ["sha"] = "sha-ni",
        ["avx512"] = "avx512f", ["tsc-adjust-msr"] = "tsc-adjust", ["avx512vpopcntdq"] = "avx512-vpopcntdq",
        ["pclmuldq"] = "pclmulqdq", ["ssbd-msr"] = "ssbd", ["ibrs"] = "spec-ctrl", ["dscpl"] = "ds-cpl",
    };

    /// <summary>
    /// Removing a feature removes what needs it (as Linux's arch/x86/kernel/cpu/cpuid-deps.c does for the kernel):
    /// without XSAVE there is no AVX state, without AVX no AVX2 or AVX-512, and so on.
    /// </summary>
    private static readonly (string Feature, string NeedsIt)[] Dependencies =
    [
        ("xsave", "osxsave"), ("xsave", "xsaveopt"), ("xsave", "xsavec"), ("xsave", "xsaves"), ("xsave", "xgetbv1"),
        ("xsave", "avx"), ("xsave", "pku"), ("xsave", "mpx"), ("xsave", "amx-tile"),
        ("avx", "fma"), ("avx", "f16c"), ("avx", "avx2"), ("avx", "avx512f"), ("avx", "vaes"), ("avx", "vpclmulqdq"),
        ("avx512f", "avx512dq"), ("avx512f", "avx512ifma"), ("avx512f", "avx512pf"), ("avx512f", "avx512er"),
        ("avx512f", "avx512cd"), ("avx512f", "avx512bw"), ("avx512f", "avx512vl"), ("avx512f", "avx512vbmi"),
        ("avx512f", "avx512vbmi2"), ("avx512f", "avx512vnni"), ("avx512f", "avx512bitalg"), ("avx512f", "avx512-vpopcntdq"),
        ("avx512f", "avx512-4vnniw"), ("avx512f", "avx512-4fmaps"), ("avx512f", "avx512-vp2intersect"), ("avx512f", "avx512-fp16"),
        ("pku", "ospke"), ("amx-tile", "amx-bf16"), ("amx-tile", "amx-int8"),
        ("sse2", "pni"), ("pni", "ssse3"), ("ssse3", "sse4.1"), ("sse4.1", "sse4.2"), ("sse2", "aes"), ("sse2", "pclmulqdq"),
        ("fxsr", "sse"), ("sse", "sse2"), ("xsaves", "xfd"),
    ];

    private static readonly Dictionary<string, (string Name, CpuidBit Bit)> ByName = BuildNames();

    private static Dictionary<string, (string, CpuidBit)> BuildNames()
    {
        var names = new Dictionary<string, (string, CpuidBit)>(StringComparer.OrdinalIgnoreCase);
        foreach (var w in Words)
            for (var bit = 0; bit < 32; bit++)
                if (w.Names[bit] is { } n) names.Add(n, (n, new CpuidBit(w.Leaf, w.Subleaf, w.Register, bit)));
        return names;
    }

    /// <summary>Every canonical name, in table order.</summary>
    public static IEnumerable<string> Names => Words.SelectMany(w => w.Names.OfType<string>());

    /// <summary>The canonical name of <paramref name="name"/> (case, '_' for '-', aliases), or null for an unknown one.</summary>
    public static string? Canonical(string name)
    {
        var n = name.Trim().Replace('_', '-');
        if (Aliases.TryGetValue(n, out var alias)) n = alias;
        return ByName.TryGetValue(n, out var known) ? known.Name : null;
    }

    /// <summary>The bit of a canonical (or alias) name.</summary>
    public static CpuidBit Bit(string name) =>
        Canonical(name) is { } c ? ByName[c].Bit : throw new ArgumentException($"unknown CPUID feature '{name}'", nameof(name));

    /// <summary>The canonical name of a bit, if it has one.</summary>
    public static string? NameOf(CpuidBit bit) =>
        Words.FirstOrDefault(w => w.Leaf == bit.Leaf && w.Subleaf == bit.Subleaf && w.Register == bit.Register)?.Names[bit.Bit];

    /// <summary><paramref name="name"/> and, transitively, every feature that needs it.</summary>
    public static IReadOnlyList<string> WithDependents(string name)
    {
        var result = new List<string> { Canonical(name) ?? throw new ArgumentException($"unknown CPUID feature '{name}'", nameof(name)) };
        for (var i = 0; i < result.Count; i++)
            foreach (var (feature, needsIt) in Dependencies)
                if (string.Equals(feature, result[i], StringComparison.OrdinalIgnoreCase) && !result.Contains(needsIt))
                    result.Add(needsIt);
        return result;
    }

    /// <summary>Whether <paramref name="bit"/> is set in <paramref name="entries"/> (false when its leaf is absent).</summary>
    public static bool IsSet(IReadOnlyList<Kvm.KvmCpuidEntry2> entries, CpuidBit bit)
    {
        foreach (var e in entries)
            if (e.Function == bit.Leaf && (bit.Subleaf is not { } s || e.Index == s))
                return (CpuidSetup.Get(e, bit.Register) & (1u << bit.Bit)) != 0;
        return false;
    }
}

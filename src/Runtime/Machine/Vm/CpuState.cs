using KvmActors.Runtime.Boot;
using KvmActors.Runtime.Kvm;

namespace KvmActors.Runtime.Vm;

/// <summary>
/// Puts a vCPU into its entry state: the CPU mode's state (<see cref="CpuSetup.EntrySregs"/>) at the image's entry
/// point with the boot stack, then the registers and segments of the guest config (shared values, then the vCPU's
/// overrides) on top.
/// </summary>
public static class CpuState
{
    /// <summary>
    /// The general registers a vCPU starts with in <paramref name="mode"/>: RIP at <paramref name="entry"/>
    /// (real mode: IP, with CS set by <see cref="EntrySregs"/>), RSP at <see cref="BootLayout.BootStackTop"/>,
    /// RFLAGS 0x2, everything else 0 except what <paramref name="rax"/>/<paramref name="rbx"/> give (Multiboot).
    /// </summary>
    public static KvmRegs EntryRegs(CpuMode mode, ulong entry, ulong rax = 0, ulong rbx = 0)
    {
        var rip = mode == CpuMode.Real ? RealModeCsIp(entry).Ip : entry;
        return CpuSetup.EntryRegs(rip, BootLayout.BootStackTop, rax, rbx);
    }

    /// <summary>
    /// Real mode reaches 1 MiB + 64 KiB - 16 at most: an entry below 64 KiB runs with CS = 0 and IP = entry;
    /// higher ones with CS = entry >> 4 and IP = entry &amp; 0xf.
    /// </summary>
    public static (ushort Cs, ushort Ip) RealModeCsIp(ulong entry)
    {
        if (entry <= 0xffff) return (0, (ushort)entry);
        if (entry >= 0x100000)
            throw new BootSetupException($"a real-mode entry point must lie below 1 MiB (got 0x{entry:x})");
        return ((ushort)(entry >> 4), (ushort)(entry & 0xf));
    }

    /// <summary>The special registers for <paramref name="mode"/>, starting from the vCPU's current ones; real mode gets CS for the entry.</summary>
    public static KvmSregs EntrySregs(in KvmSregs current, CpuMode mode, ulong entry)
    {
        var s = CpuSetup.EntrySregs(current, mode);
        if (mode == CpuMode.Real)
        {
            var cs = RealModeCsIp(entry).Cs;
            s.Cs.Selector = cs;
            s.Cs.Base = (ulong)cs << 4;
        }
        return s;
    }

    /// <summary>
    /// Enter <paramref name="mode"/> with <paramref name="entryRegs"/> and apply the config's registers and segments
    /// for vCPU <paramref name="index"/>. The boot tables must already be in memory and the vCPU's CPUID set
    /// (KVM refuses EFER.LME to a vCPU whose CPUID lacks long mode). Without boot tables
    /// (<see cref="PlatformSpec.BootTables"/>) GDTR and the protected/long-mode CR3 start at 0: the config gives them.
    /// </summary>
    public static void Apply(KvmVcpu vcpu, MachineSpec spec, int index, CpuMode mode, ulong entry, in KvmRegs entryRegs)
    {
        var sregs = EntrySregs(vcpu.GetSregs(), mode, entry);
        if (!spec.Platform.BootTables && mode != CpuMode.Real)
        {
            sregs.Gdt = default;
            sregs.Cr3 = 0;
        }
        var regs = entryRegs;
        ApplySegments(ref sregs, spec.Cpu.Segments);
        ApplyRegisters(ref regs, ref sregs, spec.Cpu.Registers);
        if (spec.VcpuOverrides.TryGetValue(index, out var own))
        {
            ApplySegments(ref sregs, own.Segments);
            ApplyRegisters(ref regs, ref sregs, own.Registers);
        }
        vcpu.SetSregs(sregs);
        vcpu.SetRegs(regs);
    }

    private static void ApplySegments(ref KvmSregs s, IReadOnlyDictionary<string, SegmentSpec> segments)
    {
        foreach (var (name, spec) in segments)
        {
            if (name is "gdtr" or "idtr")
            {
                ref var table = ref name == "gdtr" ? ref s.Gdt : ref s.Idt;
                if (spec.Base is { } tb) table.Base = tb;
                if (spec.Limit is { } tl) table.Limit = (ushort)tl;
                continue;
            }
            ref var seg = ref Segment(ref s, name);
            if (spec.Selector is { } sel) seg.Selector = sel;
            if (spec.Base is { } b) seg.Base = b;
            if (spec.Limit is { } l) seg.Limit = l;
            if (spec.Type is { } type) seg.Type = type;
            if (spec.Dpl is { } dpl) seg.Dpl = dpl;
            if (spec.Db is { } db) seg.Db = db;
            if (spec.L is { } lm) seg.L = lm;
            if (spec.G is { } g) seg.G = g;
            if (spec.S is { } system) seg.S = system;
            if (spec.Present is { } p) seg.Present = p;
            if (spec.Avl is { } avl) seg.Avl = avl;
            if (spec.Unusable is { } u) seg.Unusable = u;
        }
    }

    private static ref KvmSegment Segment(ref KvmSregs s, string name)
    {
        switch (name)
        {
            case "cs": return ref s.Cs;
            case "ds": return ref s.Ds;
            case "es": return ref s.Es;
            case "fs": return ref s.Fs;
            case "gs": return ref s.Gs;
            case "ss": return ref s.Ss;
            case "tr": return ref s.Tr;
            case "ldtr": return ref s.Ldt;
            default: throw new ArgumentException($"unknown segment '{name}'");
        }
    }

    private static void ApplyRegisters(ref KvmRegs r, ref KvmSregs s, IReadOnlyDictionary<string, ulong> values)
    {
        foreach (var (name, v) in values)
        {
            switch (name)
            {
                case "cr0": s.Cr0 = v; break;
                case "cr2": s.Cr2 = v; break;
                case "cr3": s.Cr3 = v; break;
                case "cr4": s.Cr4 = v; break;
                case "cr8": s.Cr8 = v; break;
                case "efer": s.Efer = v; break;
                case "rax": r.Rax = v; break;
                case "rbx": r.Rbx = v; break;
                case "rcx": r.Rcx = v; break;
                case "rdx": r.Rdx = v; break;
                case "rsi": r.Rsi = v; break;
                case "rdi": r.Rdi = v; break;
                case "rsp": r.Rsp = v; break;
                case "rbp": r.Rbp = v; break;
                case "r8": r.R8 = v; break;
                case "r9": r.R9 = v; break;
                case "r10": r.R10 = v; break;
                case "r11": r.R11 = v; break;
                case "r12": r.R12 = v; break;
                case "r13": r.R13 = v; break;
                case "r14": r.R14 = v; break;
                case "r15": r.R15 = v; break;
                case "rip": r.Rip = v; break;
                case "rflags": r.Rflags = v | 0x2; break; // bit 1 is reserved, always 1
                default: throw new ArgumentException($"unknown register '{name}'");
            }
        }
    }
}

using KvmActors.Runtime.Config;
using KvmActors.Runtime.Kvm;

namespace KvmActors.Runtime.Vm;

/// <summary>Puts a vCPU into the entry state the guest config asks for (shared values, then the vCPU's overrides).</summary>
public static class CpuState
{
    public static void Apply(KvmVcpu vcpu, GuestSpec spec, int index)
    {
        var sregs = vcpu.GetSregs();
        SetRealMode(ref sregs);
        ApplySegments(ref sregs, spec.Cpu.Segments);
        var regs = new KvmRegs { Rflags = 0x2 };
        ApplyRegisters(ref regs, spec.Cpu.Registers);
        if (spec.VcpuOverrides.TryGetValue(index, out var own))
        {
            ApplySegments(ref sregs, own.Segments);
            ApplyRegisters(ref regs, own.Registers);
        }
        vcpu.SetSregs(sregs);
        vcpu.SetRegs(regs);
    }

    /// <summary>Real mode with every segment at base 0 (KVM's reset state has CS at 0xffff0000).</summary>
    private static void SetRealMode(ref KvmSregs s)
    {
        static void Real(ref KvmSegment seg, byte type)
        {
            seg.Base = 0; seg.Selector = 0; seg.Limit = 0xffff; seg.Type = type; seg.Present = 1; seg.S = 1;
            seg.Dpl = 0; seg.Db = 0; seg.L = 0; seg.G = 0; seg.Avl = 0; seg.Unusable = 0;
        }
        Real(ref s.Cs, 0xb); // execute/read, accessed
        Real(ref s.Ds, 0x3); Real(ref s.Es, 0x3); Real(ref s.Fs, 0x3); Real(ref s.Gs, 0x3); Real(ref s.Ss, 0x3);
        s.Cr0 &= ~1UL; // PE off
    }

    private static void ApplySegments(ref KvmSregs s, IReadOnlyDictionary<string, SegmentSpec> segments)
    {
        foreach (var (name, spec) in segments)
        {
            ref var seg = ref Segment(ref s, name);
            if (spec.Selector is { } sel) seg.Selector = sel;
            if (spec.Base is { } b) seg.Base = b;
            if (spec.Limit is { } l) seg.Limit = l;
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
            default: throw new ArgumentException($"unknown segment '{name}'");
        }
    }

    private static void ApplyRegisters(ref KvmRegs r, IReadOnlyDictionary<string, ulong> values)
    {
        foreach (var (name, v) in values)
        {
            switch (name)
            {
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

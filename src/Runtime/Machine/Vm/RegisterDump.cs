using System.Text;
using KvmActors.Runtime.Kvm;

namespace KvmActors.Runtime.Vm;

/// <summary>Human-readable register dumps for failure reports.</summary>
public static class RegisterDump
{
    public static string Format(in KvmRegs r, in KvmSregs s)
    {
        var b = new StringBuilder();
        b.AppendLine($"  rax={r.Rax:x16} rbx={r.Rbx:x16} rcx={r.Rcx:x16} rdx={r.Rdx:x16}");
        b.AppendLine($"  rsi={r.Rsi:x16} rdi={r.Rdi:x16} rsp={r.Rsp:x16} rbp={r.Rbp:x16}");
        b.AppendLine($"  r8 ={r.R8:x16} r9 ={r.R9:x16} r10={r.R10:x16} r11={r.R11:x16}");
        b.AppendLine($"  r12={r.R12:x16} r13={r.R13:x16} r14={r.R14:x16} r15={r.R15:x16}");
        b.AppendLine($"  rip={r.Rip:x16} rflags={r.Rflags:x8}");
        b.AppendLine($"  cs={Seg(s.Cs)} ds={Seg(s.Ds)} ss={Seg(s.Ss)}");
        b.AppendLine($"  es={Seg(s.Es)} fs={Seg(s.Fs)} gs={Seg(s.Gs)}");
        b.AppendLine($"  cr0={s.Cr0:x} cr2={s.Cr2:x} cr3={s.Cr3:x} cr4={s.Cr4:x} efer={s.Efer:x}");
        b.AppendLine($"  tr={Seg(s.Tr)} ldtr={Seg(s.Ldt)}");
        b.Append($"  gdt={s.Gdt.Base:x}/{s.Gdt.Limit:x} idt={s.Idt.Base:x}/{s.Idt.Limit:x}");
        return b.ToString();
    }

    private static string Seg(in KvmSegment g) =>
        $"{g.Selector:x4}(base {g.Base:x} limit {g.Limit:x} type {g.Type:x}{(g.Dpl != 0 ? $" dpl {g.Dpl}" : "")}{(g.L != 0 ? " L" : "")}{(g.Db != 0 ? " D" : "")}" +
        $"{(g.G != 0 ? " G" : "")}{(g.S == 0 ? " sys" : "")}{(g.Present == 0 ? " np" : "")}{(g.Unusable != 0 ? " unusable" : "")})";
}

using Iced.Intel;
using KvmActors.Runtime.Kvm;
using KvmActors.Runtime.Memory;

namespace KvmActors.Runtime.Vcpu;

/// <summary>Disassembles the instruction at CS:RIP for failure reports.</summary>
public static class FaultingInstruction
{
    public static string Describe(GuestMemory memory, in KvmRegs regs, in KvmSregs sregs)
    {
        var longMode = (sregs.Efer & (1UL << 10)) != 0 && sregs.Cs.L != 0;
        var bitness = longMode ? 64 : sregs.Cs.Db != 0 ? 32 : 16;
        var linear = longMode ? regs.Rip : sregs.Cs.Base + regs.Rip;
        var physical = Translate(memory, sregs, linear);
        if (physical is null) return $"(rip 0x{regs.Rip:x}: linear 0x{linear:x} is not mapped)";
        var bytes = memory.ReadAvailable(physical.Value, 15);
        if (bytes.Length == 0) return $"(rip 0x{regs.Rip:x}: guest-physical 0x{physical:x} is not backed by memory)";
        var decoder = Decoder.Create(bitness, new ByteArrayCodeReader(bytes), regs.Rip);
        decoder.Decode(out var insn);
        var formatter = new NasmFormatter();
        var output = new StringOutput();
        formatter.Format(insn, output);
        var hex = Convert.ToHexString(bytes, 0, Math.Max(1, Math.Min(insn.Length, bytes.Length))).ToLowerInvariant();
        return insn.IsInvalid
            ? $"{bitness}-bit @ 0x{linear:x}: (invalid) bytes {Convert.ToHexString(bytes).ToLowerInvariant()}"
            : $"{bitness}-bit @ 0x{linear:x}: {output} [{hex}]";
    }

    /// <summary>Linear to guest-physical: identity with paging off; a 4-level walk in long mode (PAE otherwise).</summary>
    private static ulong? Translate(GuestMemory memory, in KvmSregs sregs, ulong linear)
    {
        const ulong Pg = 1UL << 31;
        if ((sregs.Cr0 & Pg) == 0) return linear;
        if ((sregs.Cr4 & (1UL << 5)) == 0) return null; // 32-bit non-PAE paging: not walked here
        var levels = (sregs.Efer & (1UL << 10)) != 0 ? 4 : 3;
        var table = sregs.Cr3 & 0x000f_ffff_ffff_f000UL;
        Span<byte> e = stackalloc byte[8];
        for (var level = levels; level >= 1; level--)
        {
            var shift = 12 + 9 * (level - 1);
            var index = levels == 3 && level == 3 ? (linear >> 30) & 3 : (linear >> shift) & 0x1ff;
            var entryAddr = (levels == 3 && level == 3 ? sregs.Cr3 & 0xffff_ffe0UL : table) + index * 8;
            if (!memory.IsBacked(entryAddr, 8)) return null;
            memory.Read(entryAddr, e);
            var entry = BitConverter.ToUInt64(e);
            if ((entry & 1) == 0) return null;
            var frame = entry & 0x000f_ffff_ffff_f000UL;
            if (level > 1 && (entry & 0x80) != 0)
            {
                var pageMask = (1UL << shift) - 1;
                return (frame & ~pageMask) | (linear & pageMask);
            }
            if (level == 1) return frame | (linear & 0xfff);
            table = frame;
        }
        return null;
    }
}

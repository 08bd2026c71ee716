using System.Buffers.Binary;
using KvmActors.Runtime.Kvm;
using KvmActors.Runtime.Memory;

namespace KvmActors.Runtime.Boot;

/// <summary>The CPU mode a guest is entered in.</summary>
public enum CpuMode
{
    /// <summary>16-bit real mode: every segment selector and base 0, limits 0xffff.</summary>
    Real,
    /// <summary>Flat 32-bit protected mode, paging off (the Multiboot entry state).</summary>
    Protected,
    /// <summary>64-bit long mode with the first 4 GiB (or all memory, if more) identity-mapped with 2 MiB pages.</summary>
    Long,
}

/// <summary>
/// Builds the entry state of a vCPU for a <see cref="CpuMode"/>: the boot tables in guest memory
/// (see <see cref="BootLayout"/>), the special registers and the general registers.
/// Uses only KVM_SET_SREGS/KVM_SET_REGS (EFER goes through kvm_sregs), so no MSR write is needed.
/// </summary>
public static class CpuSetup
{
    public const ulong Cr0Pe = 1UL << 0;
    public const ulong Cr0Et = 1UL << 4;
    public const ulong Cr0Nw = 1UL << 29;
    public const ulong Cr0Cd = 1UL << 30;
    public const ulong Cr0Pg = 1UL << 31;
    public const ulong Cr4Pae = 1UL << 5;
    public const ulong EferLme = 1UL << 8;
    public const ulong EferLma = 1UL << 10;
    /// <summary>RFLAGS bit 1 is reserved and always set; everything else (IF included) starts clear.</summary>
    public const ulong InitialRflags = 0x2;

    /// <summary>Segment types (kvm_segment.type): execute/read code and read/write data, accessed bit set.</summary>
    public const byte CodeType = 0xb;
    public const byte DataType = 0x3;
    /// <summary>Busy 32/64-bit TSS: the only TR type VMX accepts in IA-32e mode, and valid in protected mode.</summary>
    public const byte BusyTssType = 0xb;

    /// <summary>Page-table entry bits.</summary>
    private const ulong PtePresent = 1, PteWrite = 2, PteLarge = 0x80;

    /// <summary>The raw GDT written at <see cref="BootLayout.GdtAddress"/>: null, code32, data, code64.</summary>
    public static IReadOnlyList<ulong> GdtDescriptors { get; } =
    [
        0,
        Descriptor(0, 0xfffff, CodeType, db: true, l: false),
        Descriptor(0, 0xfffff, DataType, db: true, l: false),
        Descriptor(0, 0xfffff, CodeType, db: false, l: true),
    ];

    /// <summary>An 8-byte code/data descriptor (S=1, DPL 0, present, G=1) as in the Intel SDM vol. 3 §3.4.5.</summary>
    public static ulong Descriptor(uint baseAddress, uint limit20, byte type, bool db, bool l)
    {
        ulong d = limit20 & 0xffffUL;
        d |= (ulong)(baseAddress & 0xffffff) << 16;
        d |= (ulong)(type & 0xf) << 40;
        d |= 1UL << 44;            // S: code/data
        d |= 1UL << 47;            // P
        d |= (ulong)((limit20 >> 16) & 0xf) << 48;
        if (l) d |= 1UL << 53;
        if (db) d |= 1UL << 54;
        d |= 1UL << 55;            // G: 4 KiB granularity
        d |= (ulong)(baseAddress >> 24) << 56;
        return d;
    }

    /// <summary>End of the highest memory region (RAM or ROM).</summary>
    public static ulong MemoryTop(IGuestMemory memory) =>
        memory.Regions.Count == 0 ? 0 : memory.Regions.Max(r => r.GuestAddress + r.Size);

    /// <summary>Whether [start, start+length) is writable RAM: backed, and in no read-only region.</summary>
    public static bool IsRam(IGuestMemory memory, ulong start, ulong length) =>
        memory.IsBacked(start, length) &&
        !memory.Regions.Any(r => r.ReadOnly && start < r.GuestAddress + r.Size && r.GuestAddress < start + length);

    private static void RequireRam(IGuestMemory memory, GuestRange range, CpuMode mode)
    {
        if (!IsRam(memory, range.Start, range.Length))
            throw new BootSetupException(
                $"{mode} mode needs the {range} in writable RAM, but it is not backed by a read-write memory region " +
                $"(regions: {DescribeRegions(memory)}); give the VM RAM from address 0 covering at least 0x{range.End:x}");
    }

    internal static string DescribeRegions(IGuestMemory memory) =>
        memory.Regions.Count == 0 ? "none"
            : string.Join(", ", memory.Regions.Select(r => $"{r.Name} [0x{r.GuestAddress:x}, 0x{r.GuestAddress + r.Size:x}){(r.ReadOnly ? " ro" : "")}"));

    /// <summary>
    /// Write the boot tables <paramref name="mode"/> needs: nothing for real mode, the GDT for protected mode,
    /// the GDT and identity-mapping page tables for long mode. Checks every table lies in RAM first
    /// (<see cref="BootSetupException"/> otherwise). Idempotent; call once per VM, before the vCPUs run.
    /// </summary>
    public static void WriteBootTables(IGuestMemory memory, CpuMode mode)
    {
        if (mode == CpuMode.Real) return;

        var gdt = new GuestRange(BootLayout.GdtAddress, BootLayout.GdtAddress + (ulong)GdtDescriptors.Count * 8, "GDT");
        RequireRam(memory, gdt, mode);
        var bytes = new byte[GdtDescriptors.Count * 8];
        for (var i = 0; i < GdtDescriptors.Count; i++)
            BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(i * 8), GdtDescriptors[i]);

        if (mode == CpuMode.Long)
        {
            var top = MemoryTop(memory);
            var directories = BootLayout.PageDirectoryCount(top);
            if (directories > BootLayout.MaxPageDirectories)
                throw new BootSetupException(
                    $"long mode cannot identity-map memory up to 0x{top:x}: that needs {directories} page directories " +
                    $"but only {BootLayout.MaxPageDirectories} fit between 0x{BootLayout.PageDirectoriesAddress:x} and 0x{BootLayout.PageDirectoriesLimit:x}");
            RequireRam(memory, new(BootLayout.Pml4Address, BootLayout.Pml4Address + BootLayout.PageSize, "PML4"), mode);
            RequireRam(memory, new(BootLayout.PdptAddress, BootLayout.PdptAddress + BootLayout.PageSize, "PDPT"), mode);
            RequireRam(memory, new(BootLayout.PageDirectoriesAddress,
                BootLayout.PageDirectoriesAddress + (ulong)directories * BootLayout.PageSize, $"{directories} page directories"), mode);

            var page = new byte[BootLayout.PageSize];
            BinaryPrimitives.WriteUInt64LittleEndian(page, BootLayout.PdptAddress | PtePresent | PteWrite);
            memory.Write(BootLayout.Pml4Address, page);

            Array.Clear(page);
            for (var i = 0; i < directories; i++)
                BinaryPrimitives.WriteUInt64LittleEndian(page.AsSpan(i * 8),
                    (BootLayout.PageDirectoriesAddress + (ulong)i * BootLayout.PageSize) | PtePresent | PteWrite);
            memory.Write(BootLayout.PdptAddress, page);

            for (var i = 0; i < directories; i++)
            {
                for (var j = 0; j < 512; j++)
                {
                    var physical = ((ulong)i << 30) | ((ulong)j << 21);
                    BinaryPrimitives.WriteUInt64LittleEndian(page.AsSpan(j * 8), physical | PtePresent | PteWrite | PteLarge);
                }
                memory.Write(BootLayout.PageDirectoriesAddress + (ulong)i * BootLayout.PageSize, page);
            }
        }

        memory.Write(BootLayout.GdtAddress, bytes);
    }

    /// <summary>A flat segment as KVM wants it (limit in bytes).</summary>
    public static KvmSegment FlatSegment(ushort selector, byte type, bool db, bool l) => new()
    {
        Base = 0, Limit = 0xffffffff, Selector = selector, Type = type,
        Present = 1, Dpl = 0, Db = (byte)(db ? 1 : 0), S = 1, L = (byte)(l ? 1 : 0), G = 1, Avl = 0, Unusable = 0,
    };

    /// <summary>A real-mode segment: selector 0, base 0, limit 0xffff.</summary>
    public static KvmSegment RealSegment(byte type) => new()
    {
        Base = 0, Limit = 0xffff, Selector = 0, Type = type, Present = 1, Dpl = 0, Db = 0, S = 1, L = 0, G = 0, Avl = 0, Unusable = 0,
    };

    /// <summary>
    /// The special registers for entering <paramref name="mode"/>, starting from the vCPU's current ones
    /// (APIC base, LDT and the interrupt bitmap are kept).
    /// </summary>
    public static KvmSregs EntrySregs(in KvmSregs current, CpuMode mode)
    {
        var s = current;
        switch (mode)
        {
            case CpuMode.Real:
                s.Cs = RealSegment(CodeType);
                s.Ds = s.Es = s.Fs = s.Gs = s.Ss = RealSegment(DataType);
                s.Idt = new KvmDtable { Base = 0, Limit = 0x3ff };
                s.Cr0 &= ~(Cr0Pe | Cr0Pg);
                s.Cr3 = 0;
                s.Cr4 &= ~Cr4Pae;
                s.Efer &= ~(EferLme | EferLma);
                break;

            case CpuMode.Protected:
            case CpuMode.Long:
            {
                var longMode = mode == CpuMode.Long;
                s.Cs = longMode
                    ? FlatSegment(BootLayout.Code64Selector, CodeType, db: false, l: true)
                    : FlatSegment(BootLayout.Code32Selector, CodeType, db: true, l: false);
                s.Ds = s.Es = s.Fs = s.Gs = s.Ss = FlatSegment(BootLayout.DataSelector, DataType, db: true, l: false);
                s.Gdt = new KvmDtable { Base = BootLayout.GdtAddress, Limit = (ushort)(GdtDescriptors.Count * 8 - 1) };
                // No IDT yet: any exception before the guest loads one becomes a clean triple fault (shutdown exit).
                s.Idt = new KvmDtable { Base = 0, Limit = 0 };
                s.Tr = new KvmSegment { Base = 0, Limit = 0xffff, Selector = 0, Type = BusyTssType, Present = 1, S = 0 };
                s.Cr0 = (s.Cr0 & ~(Cr0Cd | Cr0Nw | Cr0Pg)) | Cr0Pe | Cr0Et;
                if (longMode)
                {
                    s.Cr0 |= Cr0Pg;
                    s.Cr3 = BootLayout.Pml4Address;
                    s.Cr4 |= Cr4Pae;
                    s.Efer |= EferLme | EferLma;
                }
                else
                {
                    s.Cr3 = 0;
                    s.Cr4 &= ~Cr4Pae;
                    s.Efer &= ~(EferLme | EferLma);
                }
                break;
            }
            default:
                throw new ArgumentOutOfRangeException(nameof(mode), mode, "unknown CPU mode");
        }
        return s;
    }

    /// <summary>General registers at entry: RIP, RSP, RAX, RBX, RSI; everything else 0 and RFLAGS 0x2.</summary>
    public static KvmRegs EntryRegs(ulong rip, ulong rsp = BootLayout.BootStackTop, ulong rax = 0, ulong rbx = 0, ulong rsi = 0) =>
        new() { Rip = rip, Rsp = rsp, Rax = rax, Rbx = rbx, Rsi = rsi, Rflags = InitialRflags };

    /// <summary>
    /// Put <paramref name="vcpu"/> in <paramref name="mode"/> with <paramref name="regs"/>.
    /// The tables must already be in memory (<see cref="WriteBootTables"/>).
    /// </summary>
    public static void SetEntryState(KvmVcpu vcpu, CpuMode mode, in KvmRegs regs)
    {
        vcpu.SetSregs(EntrySregs(vcpu.GetSregs(), mode));
        vcpu.SetRegs(regs);
    }

    /// <summary>
    /// Write the mode's boot tables and enter <paramref name="mode"/> at <paramref name="entry"/> with the stack at
    /// <paramref name="stack"/> (default <see cref="BootLayout.BootStackTop"/>; in real mode that is SS:SP = 0:0x7000).
    /// The entry state is the machine's own (<see cref="Vm.CpuState"/>: real mode above 64 KiB runs with
    /// CS = entry &gt;&gt; 4), so a bare vCPU set up here starts exactly as a VM's vCPU does.
    /// </summary>
    public static void Enter(KvmVcpu vcpu, IGuestMemory memory, CpuMode mode, ulong entry, ulong stack = BootLayout.BootStackTop)
    {
        if (mode == CpuMode.Protected && entry > uint.MaxValue)
            throw new BootSetupException($"protected mode entry point 0x{entry:x} is above 4 GiB");
        WriteBootTables(memory, mode);
        if (mode != CpuMode.Real) RequireRam(memory, new(BootLayout.BootStackBottom, BootLayout.BootStackTop, "boot stack"), mode);
        var regs = Vm.CpuState.EntryRegs(mode, entry);
        regs.Rsp = stack;
        vcpu.SetSregs(Vm.CpuState.EntrySregs(vcpu.GetSregs(), mode, entry));
        vcpu.SetRegs(regs);
    }

    /// <summary>Multiboot v1 machine state: 32-bit protected mode, paging off, EAX=0x2BADB002, EBX=info address.</summary>
    public static KvmRegs MultibootRegs(LoadedImage image)
    {
        if (image.MultibootInfoAddress is not { } info)
            throw new BootSetupException("the image was not loaded as a Multiboot kernel (no information structure)");
        return EntryRegs(image.EntryPoint, BootLayout.BootStackTop, rax: Multiboot.BootloaderMagic, rbx: info);
    }

    /// <summary>Enter a Multiboot kernel loaded by <see cref="Multiboot.Load"/>.</summary>
    public static void EnterMultiboot(KvmVcpu vcpu, IGuestMemory memory, LoadedImage image)
    {
        var regs = MultibootRegs(image);
        WriteBootTables(memory, CpuMode.Protected);
        RequireRam(memory, new(BootLayout.BootStackBottom, BootLayout.BootStackTop, "boot stack"), CpuMode.Protected);
        SetEntryState(vcpu, CpuMode.Protected, regs);
    }
}

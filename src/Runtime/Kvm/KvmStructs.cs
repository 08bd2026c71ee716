using System.Runtime.InteropServices;

namespace KvmActors.Runtime.Kvm;

/// <summary>struct kvm_regs (x86-64).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct KvmRegs
{
    public ulong Rax, Rbx, Rcx, Rdx, Rsi, Rdi, Rsp, Rbp;
    public ulong R8, R9, R10, R11, R12, R13, R14, R15;
    public ulong Rip, Rflags;
}

/// <summary>struct kvm_segment.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct KvmSegment
{
    public ulong Base;
    public uint Limit;
    public ushort Selector;
    public byte Type;
    public byte Present, Dpl, Db, S, L, G, Avl;
    public byte Unusable;
    public byte Padding;
}

/// <summary>struct kvm_dtable (GDT/IDT register).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct KvmDtable
{
    public ulong Base;
    public ushort Limit;
    public ushort Padding0, Padding1, Padding2;
}

/// <summary>struct kvm_sregs (x86-64), 312 bytes.</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct KvmSregs
{
    public KvmSegment Cs, Ds, Es, Fs, Gs, Ss;
    public KvmSegment Tr, Ldt;
    public KvmDtable Gdt, Idt;
    public ulong Cr0, Cr2, Cr3, Cr4, Cr8;
    public ulong Efer;
    public ulong ApicBase;
    public fixed ulong InterruptBitmap[4];
}

/// <summary>struct kvm_userspace_memory_region.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct KvmUserspaceMemoryRegion
{
    public uint Slot;
    public uint Flags;
    public ulong GuestPhysAddr;
    public ulong MemorySize;
    public ulong UserspaceAddr;

    public const uint FlagReadOnly = 1u << 1;
}

/// <summary>struct kvm_irq_level.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct KvmIrqLevel
{
    public uint Irq;
    public uint Level;
}

/// <summary>struct kvm_cpuid_entry2.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct KvmCpuidEntry2
{
    public uint Function, Index, Flags, Eax, Ebx, Ecx, Edx;
    public uint Padding0, Padding1, Padding2;
}

/// <summary>
/// Offsets into the mmap'd struct kvm_run (x86-64). The exit-specific union starts at byte 32.
/// Kept as offsets rather than one big struct because the union's members overlap; read through
/// <see cref="KvmRunView"/>, not by hand.
/// </summary>
public static class KvmRunLayout
{
    public const int RequestInterruptWindow = 0;
    public const int ImmediateExit = 1;
    public const int ExitReason = 8;
    public const int ReadyForInterruptInjection = 12;
    public const int IfFlag = 13;
    public const int Flags = 14;
    public const int Cr8 = 16;
    public const int ApicBase = 24;
    public const int Union = 32;

    // io: __u8 direction; __u8 size; __u16 port; __u32 count; __u64 data_offset;
    public const int IoDirection = Union + 0;
    public const int IoSize = Union + 1;
    public const int IoPort = Union + 2;
    public const int IoCount = Union + 4;
    public const int IoDataOffset = Union + 8;

    // mmio: __u64 phys_addr; __u8 data[8]; __u32 len; __u8 is_write;
    public const int MmioPhysAddr = Union + 0;
    public const int MmioData = Union + 8;
    public const int MmioLen = Union + 16;
    public const int MmioIsWrite = Union + 20;

    // fail_entry: __u64 hardware_entry_failure_reason; __u32 cpu;
    public const int FailEntryReason = Union + 0;
    public const int FailEntryCpu = Union + 8;

    // internal: __u32 suberror; __u32 ndata; __u64 data[16];
    public const int InternalSuberror = Union + 0;
    public const int InternalNdata = Union + 4;
    public const int InternalData = Union + 8;

    // hw: __u64 hardware_exit_reason;
    public const int HwExitReason = Union + 0;

    // system_event: __u32 type; __u32 ndata; __u64 data[16];
    public const int SystemEventType = Union + 0;

    // debug (kvm_debug_exit_arch): __u32 exception; __u32 pad; __u64 pc; __u64 dr6; __u64 dr7;
    public const int DebugException = Union + 0;
    public const int DebugPc = Union + 8;
    public const int DebugDr6 = Union + 16;
    public const int DebugDr7 = Union + 24;

    /// <summary>The header and the exit union (256 bytes): every accessor of <see cref="KvmRunView"/> lies below this.</summary>
    public const int MinimumSize = Union + 256;

    public const byte IoIn = 0;
    public const byte IoOut = 1;
}

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

    public const uint FlagLogDirtyPages = 1u << 0;
    public const uint FlagReadOnly = 1u << 1;
}

/// <summary>struct kvm_irq_level.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct KvmIrqLevel
{
    public uint Irq;
    public uint Level;
}

/// <summary>struct kvm_msi (KVM_SIGNAL_MSI), 32 bytes.</summary>
[StructLayout(LayoutKind.Sequential, Size = 32)]
public struct KvmMsi
{
    public uint AddressLo, AddressHi, Data, Flags, DevId;
}

/// <summary>struct kvm_irq_routing_entry with an MSI (type KVM_IRQ_ROUTING_MSI = 2), 48 bytes.</summary>
[StructLayout(LayoutKind.Sequential, Size = 48)]
public struct KvmIrqRoutingMsiEntry
{
    public uint Gsi, Type, Flags, Pad;
    public uint AddressLo, AddressHi, Data, DevId;
}

/// <summary>struct kvm_enable_cap (KVM_ENABLE_CAP), 104 bytes: cap, flags, args[4], pad[64].</summary>
[StructLayout(LayoutKind.Sequential, Size = 104)]
public struct KvmEnableCap
{
    public uint Cap, Flags;
    public ulong Arg0, Arg1, Arg2, Arg3;
}

/// <summary>struct kvm_cpuid_entry2.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct KvmCpuidEntry2
{
    public uint Function, Index, Flags, Eax, Ebx, Ecx, Edx;
    public uint Padding0, Padding1, Padding2;
}

// ---- State save/restore structs (x86-64 uapi: linux/kvm.h and asm/kvm.h). Sizes are checked by a test. ----

/// <summary>struct kvm_fpu, 416 bytes (the legacy FPU/SSE state, used where there is no KVM_CAP_XSAVE).</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct KvmFpu
{
    public fixed byte Fpr[8 * 16];
    public ushort Fcw, Fsw;
    public byte Ftwx, Pad1;
    public ushort LastOpcode;
    public ulong LastIp, LastDp;
    public fixed byte Xmm[16 * 16];
    public uint Mxcsr, Pad2;
}

/// <summary>struct kvm_xcr.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct KvmXcr
{
    public uint Xcr, Reserved;
    public ulong Value;
}

/// <summary>struct kvm_xcrs, 392 bytes (XCR0 and friends).</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct KvmXcrs
{
    public const int MaxXcrs = 16;
    public uint NrXcrs, Flags;
    public fixed byte Xcrs[MaxXcrs * 16]; // struct kvm_xcr[16]
    public fixed ulong Padding[16];
}

/// <summary>struct kvm_debugregs, 128 bytes.</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct KvmDebugRegs
{
    public fixed ulong Db[4];
    public ulong Dr6, Dr7, Flags;
    public fixed ulong Reserved[9];
}

/// <summary>struct kvm_lapic_state: the in-kernel local APIC's 1 KiB register page.</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct KvmLapicState
{
    public const int Size = 1024;
    public fixed byte Regs[Size];
}

/// <summary>struct kvm_msr_entry.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct KvmMsrEntry
{
    public uint Index, Reserved;
    public ulong Data;
    public KvmMsrEntry(uint index, ulong data) { Index = index; Reserved = 0; Data = data; }
}

/// <summary>struct kvm_vcpu_events, 64 bytes: pending/injected exception, interrupt, NMI, SMI and the interrupt shadow.</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct KvmVcpuEvents
{
    public byte ExceptionInjected, ExceptionNr, ExceptionHasErrorCode, ExceptionPending;
    public uint ExceptionErrorCode;
    public byte InterruptInjected, InterruptNr, InterruptSoft, InterruptShadow;
    public byte NmiInjected, NmiPending, NmiMasked, NmiPad;
    public uint SipiVector;
    public uint Flags;
    public byte SmiSmm, SmiPending, SmiInsideNmi, SmiLatchedInit;
    public byte TripleFaultPending;
    public fixed byte Reserved[26];
    public byte ExceptionHasPayload;
    public ulong ExceptionPayload;

    public const uint ValidNmiPending = 0x1, ValidSipiVector = 0x2, ValidShadow = 0x4, ValidSmm = 0x8;
}

/// <summary>struct kvm_pic_state, 16 bytes (one 8259).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct KvmPicState
{
    public byte LastIrr, Irr, Imr, Isr, PriorityAdd, IrqBase, ReadRegSelect, Poll;
    public byte SpecialMask, InitState, AutoEoi, RotateOnAutoEoi, SpecialFullyNestedMode, Init4, Elcr, ElcrMask;
}

/// <summary>struct kvm_ioapic_state, 216 bytes.</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct KvmIoapicState
{
    public const int Pins = 24;
    public ulong BaseAddress;
    public uint IoRegSel, Id, Irr, Pad;
    /// <summary>Redirection table entries as their 64-bit register values.</summary>
    public fixed ulong RedirTbl[Pins];
}

/// <summary>The chip_id values of struct kvm_irqchip.</summary>
public enum KvmIrqchipId : uint
{
    PicMaster = 0,
    PicSlave = 1,
    Ioapic = 2,
}

/// <summary>struct kvm_irqchip, 520 bytes: chip_id, pad, and a 512-byte union of the chip's state.</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct KvmIrqchip
{
    public const int ChipBytes = 512;
    public uint ChipId, Pad;
    public fixed byte Chip[ChipBytes];

    public KvmPicState Pic
    {
        readonly get { fixed (byte* p = Chip) return *(KvmPicState*)p; }
        set { fixed (byte* p = Chip) *(KvmPicState*)p = value; }
    }

    public KvmIoapicState Ioapic
    {
        readonly get { fixed (byte* p = Chip) return *(KvmIoapicState*)p; }
        set { fixed (byte* p = Chip) *(KvmIoapicState*)p = value; }
    }
}

/// <summary>struct kvm_pit_channel_state, 24 bytes.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct KvmPitChannelState
{
    public uint Count;
    public ushort LatchedCount;
    public byte CountLatched, StatusLatched, Status, ReadState, WriteState, WriteLatch, RwMode, Mode, Bcd, Gate;
    public long CountLoadTime;
}

/// <summary>struct kvm_pit_state2, 112 bytes.</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct KvmPitState2
{
    public KvmPitChannelState Channel0, Channel1, Channel2;
    public uint Flags;
    public fixed uint Reserved[9];
}

/// <summary>struct kvm_clock_data, 48 bytes (kvmclock: nanoseconds of guest time).</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct KvmClockData
{
    public ulong Clock;
    public uint Flags, Pad0;
    public ulong Realtime, HostTsc;
    public fixed uint Pad[4];

    public const uint FlagTscStable = 0x2, FlagRealtime = 0x4, FlagHostTsc = 0x8;
}

/// <summary>struct kvm_dirty_log, 16 bytes: slot and a pointer to the caller's bitmap.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct KvmDirtyLog
{
    public uint Slot, Padding;
    public ulong DirtyBitmap;
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

namespace KvmActors.Runtime.Kvm;

/// <summary>
/// ioctl request numbers from linux/kvm.h (x86-64), computed with the kernel's _IO/_IOR/_IOW/_IOWR encoding
/// so a reader can check each one against the header: dir(2 bits) | size(14) | type(8) | nr(8).
/// </summary>
public static class KvmIoctls
{
    private const uint KvmIo = 0xAE;
    private static uint Io(uint nr) => (KvmIo << 8) | nr;
    private static uint Ior(uint nr, int size) => (2u << 30) | ((uint)size << 16) | (KvmIo << 8) | nr;
    private static uint Iow(uint nr, int size) => (1u << 30) | ((uint)size << 16) | (KvmIo << 8) | nr;
    private static uint Iowr(uint nr, int size) => (3u << 30) | ((uint)size << 16) | (KvmIo << 8) | nr;

    public static readonly uint GetApiVersion = Io(0x00);
    public static readonly uint CreateVm = Io(0x01);
    public static readonly uint CheckExtension = Io(0x03);
    public static readonly uint GetVcpuMmapSize = Io(0x04);
    public static readonly uint GetSupportedCpuid = Iowr(0x05, 8);
    public static readonly uint CreateVcpu = Io(0x41);
    public static readonly uint SetUserMemoryRegion = Iow(0x46, 32);
    public static readonly uint SetTssAddr = Io(0x47);
    public static readonly uint SetIdentityMapAddr = Iow(0x48, 8);
    public static readonly uint CreateIrqchip = Io(0x60);
    public static readonly uint IrqLine = Iow(0x61, 8);
    public static readonly uint CreatePit2 = Iow(0x77, 64);
    public static readonly uint Run = Io(0x80);
    public static readonly uint GetRegs = Ior(0x81, 144);
    public static readonly uint SetRegs = Iow(0x82, 144);
    public static readonly uint GetSregs = Ior(0x83, 312);
    public static readonly uint SetSregs = Iow(0x84, 312);
    public static readonly uint SetMsrs = Iow(0x89, 8);
    public static readonly uint SetSignalMask = Iow(0x8b, 4);
    public static readonly uint SetCpuid2 = Iow(0x90, 8);
    public static readonly uint GetMpState = Ior(0x98, 4);
    public static readonly uint SetMpState = Iow(0x99, 4);
    public static readonly uint Translate = Iowr(0x85, 24);
    public static readonly uint SetGuestDebug = Iow(0x9b, 72);

    // State save/restore (snapshots, migration). Sizes are the x86-64 uapi structs; see KvmStructs.cs.
    public static readonly uint GetMsrIndexList = Iowr(0x02, 4);
    public static readonly uint GetDirtyLog = Iow(0x42, 16);
    // Historical quirk in linux/kvm.h: KVM_GET_IRQCHIP is _IOWR and KVM_SET_IRQCHIP is _IOR.
    public static readonly uint GetIrqchip = Iowr(0x62, 520);
    public static readonly uint SetIrqchip = Ior(0x63, 520);
    public static readonly uint SetClock = Iow(0x7b, 48);
    public static readonly uint GetClock = Ior(0x7c, 48);
    public static readonly uint GetMsrs = Iowr(0x88, 8);
    public static readonly uint GetFpu = Ior(0x8c, 416);
    public static readonly uint SetFpu = Iow(0x8d, 416);
    public static readonly uint GetLapic = Ior(0x8e, 1024);
    public static readonly uint SetLapic = Iow(0x8f, 1024);
    public static readonly uint GetCpuid2 = Iowr(0x91, 8);
    public static readonly uint GetVcpuEvents = Ior(0x9f, 64);
    public static readonly uint SetVcpuEvents = Iow(0xa0, 64);
    public static readonly uint GetPit2 = Ior(0x9f, 112);
    public static readonly uint SetPit2 = Iow(0xa0, 112);
    public static readonly uint GetDebugRegs = Ior(0xa1, 128);
    public static readonly uint SetDebugRegs = Iow(0xa2, 128);
    public static readonly uint GetXsave = Ior(0xa4, 4096);
    public static readonly uint SetXsave = Iow(0xa5, 4096);
    public static readonly uint GetXcrs = Ior(0xa6, 392);
    public static readonly uint SetXcrs = Iow(0xa7, 392);
    public static readonly uint GetXsave2 = Ior(0xcf, 4096);

    // Split irqchip (userspace IOAPIC/PIC, local APICs in the kernel) and MSI injection.
    public static readonly uint EnableCap = Iow(0xa3, 104);
    public static readonly uint SignalMsi = Iow(0xa5, 32);
    public static readonly uint SetGsiRouting = Iow(0x6a, 8);

    /// <summary>Name of a request number, for error messages.</summary>
    public static string Name(uint request) => request switch
    {
        _ when request == GetApiVersion => "KVM_GET_API_VERSION",
        _ when request == CreateVm => "KVM_CREATE_VM",
        _ when request == CheckExtension => "KVM_CHECK_EXTENSION",
        _ when request == GetVcpuMmapSize => "KVM_GET_VCPU_MMAP_SIZE",
        _ when request == GetSupportedCpuid => "KVM_GET_SUPPORTED_CPUID",
        _ when request == CreateVcpu => "KVM_CREATE_VCPU",
        _ when request == SetUserMemoryRegion => "KVM_SET_USER_MEMORY_REGION",
        _ when request == SetTssAddr => "KVM_SET_TSS_ADDR",
        _ when request == SetIdentityMapAddr => "KVM_SET_IDENTITY_MAP_ADDR",
        _ when request == CreateIrqchip => "KVM_CREATE_IRQCHIP",
        _ when request == IrqLine => "KVM_IRQ_LINE",
        _ when request == CreatePit2 => "KVM_CREATE_PIT2",
        _ when request == Run => "KVM_RUN",
        _ when request == GetRegs => "KVM_GET_REGS",
        _ when request == SetRegs => "KVM_SET_REGS",
        _ when request == GetSregs => "KVM_GET_SREGS",
        _ when request == SetSregs => "KVM_SET_SREGS",
        _ when request == SetMsrs => "KVM_SET_MSRS",
        _ when request == SetSignalMask => "KVM_SET_SIGNAL_MASK",
        _ when request == SetCpuid2 => "KVM_SET_CPUID2",
        _ when request == GetMpState => "KVM_GET_MP_STATE",
        _ when request == SetMpState => "KVM_SET_MP_STATE",
        _ when request == Translate => "KVM_TRANSLATE",
        _ when request == SetGuestDebug => "KVM_SET_GUEST_DEBUG",
        _ when request == GetMsrIndexList => "KVM_GET_MSR_INDEX_LIST",
        _ when request == GetDirtyLog => "KVM_GET_DIRTY_LOG",
        _ when request == GetIrqchip => "KVM_GET_IRQCHIP",
        _ when request == SetIrqchip => "KVM_SET_IRQCHIP",
        _ when request == SetClock => "KVM_SET_CLOCK",
        _ when request == GetClock => "KVM_GET_CLOCK",
        _ when request == GetMsrs => "KVM_GET_MSRS",
        _ when request == GetFpu => "KVM_GET_FPU",
        _ when request == SetFpu => "KVM_SET_FPU",
        _ when request == GetLapic => "KVM_GET_LAPIC",
        _ when request == SetLapic => "KVM_SET_LAPIC",
        _ when request == GetCpuid2 => "KVM_GET_CPUID2",
        _ when request == GetVcpuEvents => "KVM_GET_VCPU_EVENTS",
        _ when request == SetVcpuEvents => "KVM_SET_VCPU_EVENTS",
        _ when request == GetPit2 => "KVM_GET_PIT2",
        _ when request == SetPit2 => "KVM_SET_PIT2",
        _ when request == GetDebugRegs => "KVM_GET_DEBUGREGS",
        _ when request == SetDebugRegs => "KVM_SET_DEBUGREGS",
        _ when request == GetXsave => "KVM_GET_XSAVE",
        _ when request == SetXsave => "KVM_SET_XSAVE",
        _ when request == GetXcrs => "KVM_GET_XCRS",
        _ when request == SetXcrs => "KVM_SET_XCRS",
        _ when request == GetXsave2 => "KVM_GET_XSAVE2",
        _ when request == EnableCap => "KVM_ENABLE_CAP",
        _ when request == SignalMsi => "KVM_SIGNAL_MSI",
        _ when request == SetGsiRouting => "KVM_SET_GSI_ROUTING",
        _ => $"ioctl 0x{request:x8}",
    };
}

/// <summary>KVM_CAP_* numbers used by the runtime.</summary>
public enum KvmCap
{
    Irqchip = 0,
    Hlt = 1,
    UserMemory = 3,
    SetTssAddr = 4,
    ExtCpuid = 7,
    Pit = 11,
    NrVcpus = 9,
    NrMemslots = 10,
    MpState = 14,
    SetIdentityMapAddr = 37,
    Pit2 = 33,
    ImmediateExit = 136,
    MaxVcpus = 66,
    PitState2 = 35,
    AdjustClock = 39,
    VcpuEvents = 41,
    DebugRegs = 50,
    Xsave = 55,
    Xcrs = 56,
    ManualDirtyLogProtect2 = 168,
    /// <summary>Answers the size in bytes of the vCPU's XSAVE area (at least 4096).</summary>
    Xsave2 = 208,
    SignalMsi = 77,
    /// <summary>KVM_ENABLE_CAP on the VM: local APICs in the kernel, IOAPIC and PIC in userspace (args[0]: IOAPIC pins).</summary>
    SplitIrqchip = 121,
}

/// <summary>kvm_run.exit_reason values (KVM_EXIT_*).</summary>
public enum KvmExitReason : uint
{
    Unknown = 0,
    Exception = 1,
    Io = 2,
    Hypercall = 3,
    Debug = 4,
    Hlt = 5,
    Mmio = 6,
    IrqWindowOpen = 7,
    Shutdown = 8,
    FailEntry = 9,
    Intr = 10,
    SetTpr = 11,
    TprAccess = 12,
    Nmi = 16,
    InternalError = 17,
    SystemEvent = 24,
    /// <summary>A split irqchip's local APIC took an EOI for a level-triggered vector of the userspace IOAPIC's routes (eoi.vector).</summary>
    IoapicEoi = 26,
}

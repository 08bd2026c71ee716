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
}

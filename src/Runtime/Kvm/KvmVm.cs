namespace KvmActors.Runtime.Kvm;

/// <summary>A KVM virtual machine fd: memory slots, vCPU creation, irqchip and IRQ lines.</summary>
public sealed partial class KvmVm : IDisposable
{
    private readonly SafeFd _fd;
    public KvmSystem Kvm { get; }

    internal KvmVm(KvmSystem kvm, SafeFd fd) { Kvm = kvm; _fd = fd; }

    /// <summary>
    /// KVM_SET_USER_MEMORY_REGION. Called again for an existing slot with the same range, it changes only the flags
    /// (KVM allows toggling <paramref name="logDirty"/> on a live slot; read-only cannot change).
    /// </summary>
    public unsafe void SetUserMemoryRegion(uint slot, ulong guestPhys, ulong size, nint hostAddress, bool readOnly, bool logDirty = false)
    {
        var region = new KvmUserspaceMemoryRegion
        {
            Slot = slot, GuestPhysAddr = guestPhys, MemorySize = size, UserspaceAddr = (ulong)hostAddress,
            Flags = (readOnly ? KvmUserspaceMemoryRegion.FlagReadOnly : 0) | (logDirty ? KvmUserspaceMemoryRegion.FlagLogDirtyPages : 0),
        };
        KvmCalls.Ioctl(_fd, KvmIoctls.SetUserMemoryRegion, &region, $"slot {slot} at 0x{guestPhys:x} size 0x{size:x}");
    }

    public int CheckExtension(KvmCap cap) => KvmCalls.Ioctl(_fd, KvmIoctls.CheckExtension, (nint)cap);

    public void SetTssAddr(ulong address) => KvmCalls.Ioctl(_fd, KvmIoctls.SetTssAddr, (nint)address);

    public unsafe void SetIdentityMapAddr(ulong address) => KvmCalls.Ioctl(_fd, KvmIoctls.SetIdentityMapAddr, &address);

    public void CreateIrqchip() => KvmCalls.Ioctl(_fd, KvmIoctls.CreateIrqchip, 0);

    public unsafe void CreatePit2()
    {
        var config = stackalloc byte[64];
        new Span<byte>(config, 64).Clear();
        KvmCalls.Ioctl(_fd, KvmIoctls.CreatePit2, config);
    }

    /// <summary>
    /// KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP): the local APICs in the kernel, the IOAPIC and PIC left to userspace;
    /// <paramref name="ioapicPins"/> GSIs are reserved for the userspace IOAPIC's routes. Before any vCPU, instead of
    /// KVM_CREATE_IRQCHIP.
    /// </summary>
    public unsafe void EnableSplitIrqchip(uint ioapicPins)
    {
        var cap = new KvmEnableCap { Cap = (uint)KvmCap.SplitIrqchip, Arg0 = ioapicPins };
        KvmCalls.Ioctl(_fd, KvmIoctls.EnableCap, &cap, "KVM_CAP_SPLIT_IRQCHIP");
    }

    /// <summary>
    /// KVM_SIGNAL_MSI: an MSI (address, data) to the in-kernel local APICs. Returns false when KVM answers 0 (the
    /// interrupt was blocked, e.g. no vCPU matched the destination); thread-safe, like KVM_IRQ_LINE.
    /// </summary>
    public unsafe bool SignalMsi(ulong address, uint data)
    {
        var msi = new KvmMsi { AddressLo = (uint)address, AddressHi = (uint)(address >> 32), Data = data };
        return KvmCalls.Ioctl(_fd, KvmIoctls.SignalMsi, &msi, $"MSI 0x{address:x}/0x{data:x}") > 0;
    }

    /// <summary>
    /// KVM_SET_GSI_ROUTING with MSI routes only (gsi → address, data): the whole table, replacing the old. With a split
    /// irqchip, KVM watches the level-triggered ones among the reserved IOAPIC GSIs and exits with KVM_EXIT_IOAPIC_EOI
    /// when a local APIC takes their EOI.
    /// </summary>
    public unsafe void SetMsiRouting(IReadOnlyList<(uint Gsi, ulong Address, uint Data)> routes)
    {
        var size = 8 + 48 * routes.Count;
        var buffer = stackalloc byte[size];
        new Span<byte>(buffer, size).Clear();
        *(uint*)buffer = (uint)routes.Count;
        var entries = (KvmIrqRoutingMsiEntry*)(buffer + 8);
        for (var i = 0; i < routes.Count; i++)
            entries[i] = new KvmIrqRoutingMsiEntry
            {
                Gsi = routes[i].Gsi, Type = 2, AddressLo = (uint)routes[i].Address, AddressHi = (uint)(routes[i].Address >> 32), Data = routes[i].Data,
            };
        KvmCalls.Ioctl(_fd, KvmIoctls.SetGsiRouting, buffer, $"{routes.Count} MSI route(s)");
    }

    public unsafe void SetIrqLine(uint irq, bool level)
    {
        var l = new KvmIrqLevel { Irq = irq, Level = level ? 1u : 0u };
        KvmCalls.Ioctl(_fd, KvmIoctls.IrqLine, &l, $"irq {irq}");
    }

    public KvmVcpu CreateVcpu(int id)
    {
        var fd = new SafeFd(KvmCalls.Ioctl(_fd, KvmIoctls.CreateVcpu, id, $"vcpu {id}"));
        try
        {
            var run = SafeMapping.Shared(fd, (ulong)Kvm.VcpuMmapSize, $"kvm_run of vcpu {id}");
            return new KvmVcpu(id, fd, run, this);
        }
        catch { fd.Dispose(); throw; }
    }

    public void Dispose() => _fd.Dispose();
}

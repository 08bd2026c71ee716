using KvmActors.Runtime.Boot;
using KvmActors.Runtime.Boot.Acpi;
using KvmActors.Runtime.Kvm;
using KvmActors.Runtime.Memory;
using KvmActors.Runtime.Snapshot;

namespace KvmActors.Runtime.Vm;

/// <summary>
/// The kernel side of one VM, built from a guest spec: the /dev/kvm fd, the VM fd (with its in-kernel irqchip
/// and PIT when the config asks), guest memory with the image loaded and the mode's boot tables written, and
/// the vCPU fds with their CPUID and entry state. Owned by the VM actor; <see cref="Dispose"/> releases every
/// fd and mapping. No actors here: the VM actor adds devices and vCPU actors around it.
/// </summary>
/// <remarks>
/// Order of creation (KVM API): VM; KVM_SET_TSS_ADDR / KVM_SET_IDENTITY_MAP_ADDR; memory slots; KVM_CREATE_IRQCHIP
/// and KVM_CREATE_PIT2; image and boot tables; then per vCPU: KVM_CREATE_VCPU, KVM_SET_CPUID2, and
/// the entry state (KVM_SET_SREGS, KVM_SET_REGS). With an irqchip only vCPU 0 (the BSP) gets an entry state;
/// the others (APs) are left as KVM creates them, in MP state UNINITIALIZED, waiting for INIT/SIPI.
/// </remarks>
public sealed class Machine : IDisposable
{
    /// <summary>KVM_MP_STATE_UNINITIALIZED (KVM API, KVM_GET_MP_STATE): an AP waiting for INIT/SIPI.</summary>
    public const uint MpStateUninitialized = 1;

    public MachineSpec Spec { get; }
    public KvmSystem Kvm { get; }
    public KvmVm Vm { get; }
    public GuestMemory Memory { get; }
    public IReadOnlyList<KvmVcpu> Vcpus => _vcpus;
    public MachineInfo Info { get; }
    /// <summary>Whether the VM has an in-kernel irqchip (PIC, IOAPIC, local APICs) and PIT.</summary>
    public bool HasIrqchip { get; private set; }
    /// <summary>With <see cref="HasIrqchip"/>: only the local APICs are in the kernel (KVM_CAP_SPLIT_IRQCHIP); no PIC, IOAPIC or PIT there.</summary>
    public bool SplitIrqchip { get; private set; }
    /// <summary>The IOAPIC pins KVM reserves for a split irqchip's userspace IOAPIC (QEMU's and a PC's: 24).</summary>
    public const uint IoapicPins = 24;
    /// <summary>What the loader put into memory (entry point, segments, Multiboot information).</summary>
    public LoadedImage? Image { get; private set; }
    /// <summary>The CPUID table each vCPU was given, by vCPU index.</summary>
    public IReadOnlyList<KvmCpuidEntry2[]> Cpuid => _cpuid;
    /// <summary>After <see cref="Restore"/>: saved MSRs this host's KVM would not take (the caller logs them).</summary>
    public IReadOnlyList<uint> RefusedMsrs { get; private set; } = [];

    private readonly List<KvmVcpu> _vcpus = new();
    private readonly List<KvmCpuidEntry2[]> _cpuid = new();

    private Machine(MachineSpec spec, KvmSystem kvm, KvmVm vm, GuestMemory memory)
    {
        Spec = spec;
        Kvm = kvm;
        Vm = vm;
        Memory = memory;
        Info = new MachineInfo(spec.VcpuCount, memory.RamSize, spec.Memory);
    }

    public static Machine Create(MachineSpec spec, string kvmDevice) => Build(spec, kvmDevice, machine =>
    {
        machine.WriteRegionContents();
        machine.Image = machine.LoadImage();
        machine.WriteBootTables();
        machine.WriteAcpiTables();
        machine.CreateVcpus();
    });

    /// <summary>
    /// A machine in the state a snapshot saved: the same VM, irqchip and memory slots as <see cref="Create"/>, but
    /// memory loaded from the snapshot (no image, boot or ACPI tables are written: they are in it) and each vCPU
    /// given its saved state (CPUID first). The VM-wide irqchip, PIT and clock state go in last, over the vCPUs'.
    /// </summary>
    public static Machine Restore(MachineSpec spec, string kvmDevice, MachineRestore restore) => Build(spec, kvmDevice, machine =>
    {
        if (restore.Vcpus.Count != spec.VcpuCount)
            throw new SnapshotFormatException($"the snapshot has {restore.Vcpus.Count} vCPU(s), its guest config {spec.VcpuCount}");
        var supported = machine.Kvm.GetSupportedCpuid();
        foreach (var state in restore.Vcpus)
            if (CpuidCompatibility.Check(VcpuStateIo.CpuidEntries(state), supported) is { } why)
                throw new SnapshotFormatException($"this host cannot run the snapshot's vCPU {state.VcpuId}: {why}");
        var regions = machine.Memory.Regions;
        for (var i = 0; i < regions.Count; i++) restore.LoadRegion(i, regions[i], machine.Memory.RegionBytes(i));
        var refused = new List<uint>();
        foreach (var state in restore.Vcpus)
        {
            var vcpu = machine.Vm.CreateVcpu(state.VcpuId);
            machine._vcpus.Add(vcpu);
            refused.AddRange(VcpuStateIo.Apply(vcpu, state));
            machine._cpuid.Add(VcpuStateIo.CpuidEntries(state));
        }
        VmStateIo.Apply(machine.Vm, restore.Vm);
        machine.RefusedMsrs = refused.Distinct().Order().ToList();
    });

    private static Machine Build(MachineSpec spec, string kvmDevice, Action<Machine> fill)
    {
        var kvm = KvmSystem.Open(kvmDevice);
        KvmVm? vm = null;
        GuestMemory? memory = null;
        try
        {
            vm = kvm.CreateVm();
            // Before any vCPU exists (KVM API): the private pages, the memory slots, then the irqchip and the PIT.
            // Slots first: KVM_SET_USER_MEMORY_REGION on a VM that has an irqchip took 4-10 ms here (against
            // ~0.04 ms before it: kvm-floor.c, kvmactors bench density), most of a VM's create time.
            KvmPrivatePages.Set(vm, spec.Memory);
            memory = GuestMemory.Create(vm, spec.Memory);
            var machine = new Machine(spec, kvm, vm, memory) { HasIrqchip = spec.Platform.Irqchip, SplitIrqchip = spec.Platform.Irqchip && spec.Platform.SplitIrqchip };
            try
            {
                if (machine.SplitIrqchip)
                {
                    // The in-kernel PIT needs the kernel's PIC and IOAPIC (KVM refuses KVM_CREATE_PIT2 without them),
                    // so a split machine has none: ports 0x40-0x43 are unmapped unless a device takes them.
                    if (vm.CheckExtension(KvmCap.SplitIrqchip) <= 0)
                        throw new ConfigException(spec.SourceFile, "guest.irqchip", "this host's KVM has no KVM_CAP_SPLIT_IRQCHIP: use irqchip = true");
                    vm.EnableSplitIrqchip(IoapicPins);
                }
                else if (spec.Platform.Irqchip)
                {
                    vm.CreateIrqchip();
                    vm.CreatePit2();
                }
                fill(machine);
                return machine;
            }
            catch { machine.Dispose(); throw; }
        }
        catch when (memory is null)
        {
            vm?.Dispose();
            kvm.Dispose();
            throw;
        }
    }

    private ConfigException Error(string key, string problem, Exception? inner = null) =>
        new(Spec.SourceFile, "guest." + key, problem, inner);

    private string ImageKey => Spec.Image.Path is null ? "image.inline" : "image.file";

    private void WriteRegionContents()
    {
        foreach (var c in Spec.Platform.RegionContents)
            Memory.Write(c.GuestAddress, c.Data);
    }

    private LoadedImage LoadImage()
    {
        var image = Spec.Image;
        var platform = Spec.Platform;
        try
        {
            switch (platform.Format)
            {
                case PlatformNames.FormatElf:
                    return ImageLoader.LoadElf(Memory, image.Bytes, platform.Mode, platform.BootTables);
                case PlatformNames.FormatMultiboot:
                    return Multiboot.Load(Memory, image.Bytes, platform.ProgramName, platform.Cmdline,
                        platform.Modules.Select(m => new MultibootModule(m.String, m.Data)).ToList());
                default:
                    return ImageLoader.LoadFlat(Memory, image.Bytes, image.LoadAddress, platform.Mode, bootTables: platform.BootTables);
            }
        }
        catch (BootImageException e)
        {
            var key = platform.Format == PlatformNames.FormatFlat ? "image.load-address" : ImageKey;
            throw Error(key, $"image '{image.Origin}' ({platform.Format}, {platform.ModeName} mode) cannot be loaded: {e.Message}", e);
        }
    }

    private void WriteBootTables()
    {
        var mode = Spec.Platform.Mode;
        if (!Spec.Platform.BootTables) return; // cpu.boot-tables = none: the guest file's state and the image's own tables
        try
        {
            CpuSetup.WriteBootTables(Memory, mode);
            if (mode != CpuMode.Real && !CpuSetup.IsRam(Memory, BootLayout.BootStackBottom, BootLayout.BootStackTop - BootLayout.BootStackBottom))
                throw new BootSetupException(
                    $"{mode} mode needs the boot stack [0x{BootLayout.BootStackBottom:x}, 0x{BootLayout.BootStackTop:x}) in writable RAM; give the VM RAM from address 0");
        }
        catch (BootSetupException e)
        {
            throw Error("memory", e.Message, e);
        }
    }

    /// <summary>The ACPI tables, when the platform asks: after the image, which must not lie under them.</summary>
    private void WriteAcpiTables()
    {
        if (!Spec.Platform.Acpi) return;
        var area = new GuestRange(AcpiLayout.AreaStart, AcpiLayout.AreaEnd, "ACPI tables");
        var image = Image!;
        var used = image.Segments.Concat(image.Modules ?? []).Concat(image.BootData is { } b ? [b] : []);
        if (used.FirstOrDefault(area.Overlaps) is { Length: > 0 } clash)
            throw Error("acpi", $"the ACPI tables go to {area}, which {clash} of the image overlaps: load the image elsewhere or set guest.acpi = false");
        if (!CpuSetup.IsRam(Memory, area.Start, area.Length))
            throw Error("acpi", $"the ACPI tables need writable RAM at {area}: give the VM RAM from address 0 up to 1 MiB or set guest.acpi = false");
        foreach (var table in AcpiTables.Build(Spec.VcpuCount))
            Memory.Write(table.Address, table.Bytes);
    }

    private void CreateVcpus()
    {
        var platform = Spec.Platform;
        var image = Image!;
        var mode = platform.Mode;
        var entryRegs = image.MultibootInfoAddress is { } info
            ? CpuState.EntryRegs(mode, image.EntryPoint, Multiboot.BootloaderMagic, info)
            : CpuState.EntryRegs(mode, image.EntryPoint);
        if (mode == CpuMode.Real)
        {
            try { CpuState.RealModeCsIp(image.EntryPoint); }
            catch (BootSetupException e) { throw Error("image.load-address", e.Message, e); }
        }

        var model = ModelCpuid();
        for (var i = 0; i < Spec.VcpuCount; i++)
        {
            var vcpu = Vm.CreateVcpu(i);
            _vcpus.Add(vcpu);
            // CPUID first: KVM checks EFER.LME against it, and it belongs before the first KVM_RUN.
            var cpuid = CpuidSetup.Build(model, (uint)i);
            vcpu.SetCpuid(cpuid);
            _cpuid.Add(cpuid);
            if (HasIrqchip && i != 0)
            {
                // An AP: KVM created it UNINITIALIZED (the irqchip is in the kernel), so its first KVM_RUN blocks
                // until INIT/SIPI puts it in real mode at the SIPI vector. Nothing here may make it runnable.
                if (vcpu.GetMpState() != MpStateUninitialized) vcpu.SetMpState(MpStateUninitialized);
                continue;
            }
            CpuState.Apply(vcpu, Spec, i, mode, image.EntryPoint, entryRegs);
        }
    }

    /// <summary>
    /// KVM's supported CPUID shaped by <c>guest.cpuid</c> (model, vendor, signature, features): a feature this KVM
    /// cannot give, or a model without long mode for a long-mode guest, is a config error naming the key and the feature.
    /// </summary>
    private KvmCpuidEntry2[] ModelCpuid()
    {
        var cpuid = Spec.Platform.Cpuid;
        KvmCpuidEntry2[] model;
        try { model = CpuModels.Build(Kvm.GetSupportedCpuid(), cpuid); }
        catch (CpuidRequestException e) { throw new ConfigException(cpuid.Source.Length > 0 ? cpuid.Source : Spec.SourceFile, "guest.cpuid.features", e.Message, e); }
        if (Spec.Platform.Mode == CpuMode.Long && !CpuidFeatures.IsSet(model, CpuidFeatures.Bit("lm")))
            throw Error("cpuid.model", $"the guest enters long mode, but its CPUID (model {cpuid.Model}{(cpuid.Remove.Count > 0 ? $", -{string.Join(", -", cpuid.Remove)}" : "")}) has no lm (CPUID.80000001:EDX[29]): use a 64-bit model");
        return model;
    }

    /// <summary>
    /// Drive an interrupt line (a GSI: PIC input for 0-15, IOAPIC pin for 0-23) with KVM_IRQ_LINE.
    /// Returns true when the VM has an in-kernel irqchip; without one there is nothing to drive and it returns false.
    /// </summary>
    public bool SetIrqLine(int line, bool level)
    {
        if (!HasIrqchip || SplitIrqchip) return false; // split: the lines are the userspace IOAPIC's (DevicePlatform)
        Vm.SetIrqLine((uint)line, level);
        return true;
    }

    private readonly object _routesLock = new();
    private readonly Dictionary<uint, (ulong Address, uint Data)> _levelRoutes = new();

    /// <summary>
    /// A split irqchip's IOAPIC pin <paramref name="pin"/> delivers a level-triggered message: its GSI's MSI route is set
    /// to it (KVM_SET_GSI_ROUTING when it changed) and the GSI asserted (KVM_IRQ_LINE), so that KVM reports the local
    /// APIC's EOI for it (KVM_EXIT_IOAPIC_EOI), which KVM_SIGNAL_MSI would not. Thread-safe.
    /// </summary>
    public bool DeliverLevelTriggered(int pin, ulong address, uint data)
    {
        if (!SplitIrqchip || pin is < 0 or >= (int)IoapicPins) return false;
        lock (_routesLock)
        {
            if (!_levelRoutes.TryGetValue((uint)pin, out var route) || route != (address, data))
            {
                _levelRoutes[(uint)pin] = (address, data);
                Vm.SetMsiRouting(_levelRoutes.Select(r => (r.Key, r.Value.Address, r.Value.Data)).ToList());
            }
            Vm.SetIrqLine((uint)pin, true);
        }
        return true;
    }

    /// <summary>KVM_SIGNAL_MSI (needs an irqchip, split or not): false when no local APIC took it, or without an irqchip.</summary>
    public bool SignalMsi(ulong address, uint data) => HasIrqchip && Vm.SignalMsi(address, data);

    public void Dispose()
    {
        foreach (var v in _vcpus) v.Dispose();
        _vcpus.Clear();
        Memory.Dispose();
        Vm.Dispose();
        Kvm.Dispose();
    }
}

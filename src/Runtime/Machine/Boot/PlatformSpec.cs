using KvmActors.Runtime.Memory;

namespace KvmActors.Runtime.Boot;

/// <summary>A Multiboot module from the guest config: its bytes and the string the kernel sees for it.</summary>
public sealed record BootModuleSpec(string String, byte[] Data, string Origin);

/// <summary>Initial contents of a memory region (a ROM's image, or data preloaded into RAM), written at the region's start.</summary>
public sealed record RegionContentSpec(string RegionName, ulong GuestAddress, byte[] Data, string Origin);

/// <summary>
/// How a guest is booted: the CPU mode it is entered in, the image format, the in-kernel irqchip, CPUID masking,
/// the Multiboot command line and modules, and initial region contents. Bound from the guest config by
/// the config binder (KvmActors.Config); used by <see cref="Vm.Machine"/>.
/// </summary>
public sealed record PlatformSpec
{
    /// <summary>The mode every vCPU that starts at the entry point is entered in (the APs of an irqchip VM start from SIPI instead).</summary>
    public CpuMode Mode { get; init; } = CpuMode.Real;
    /// <summary>flat, elf or multiboot.</summary>
    public string Format { get; init; } = PlatformNames.FormatFlat;
    /// <summary>KVM_CREATE_IRQCHIP + KVM_CREATE_PIT2 before the vCPUs: PIC, IOAPIC, local APICs and PIT in the kernel.</summary>
    public bool Irqchip { get; init; }
    /// <summary>
    /// With <see cref="Irqchip"/>: KVM_CAP_SPLIT_IRQCHIP instead of KVM_CREATE_IRQCHIP: the local APICs stay in the
    /// kernel, the IOAPIC and PIC are userspace devices (<c>ioapic</c>, <c>i8259</c>) and there is no in-kernel PIT.
    /// </summary>
    public bool SplitIrqchip { get; init; }
    /// <summary>Write ACPI tables (RSDP, RSDT, XSDT, FADT, FACS, MADT, DSDT) into the BIOS area (<see cref="Acpi.AcpiLayout"/>).</summary>
    public bool Acpi { get; init; }
    /// <summary>CPUID feature names (<see cref="CpuidFeatures"/>) cleared in every vCPU's CPUID, as written (<c>cpuid.mask</c>; also in <see cref="Cpuid"/>'s Remove).</summary>
    public IReadOnlyList<string> CpuidMask { get; init; } = [];
    /// <summary>The CPU model and feature changes (<c>guest.cpuid</c>): <see cref="CpuModels.Build"/>.</summary>
    public CpuidSpec Cpuid { get; init; } = CpuidSpec.Default;
    /// <summary>
    /// Whether the VMM writes the mode's GDT and page tables (<c>cpu.boot-tables = auto</c>); false (<c>none</c>): it
    /// writes nothing, the guest file's registers and segments give the whole entry state, and an image may load
    /// anywhere in RAM, page 0 included.
    /// </summary>
    public bool BootTables { get; init; } = true;
    /// <summary>Multiboot: the first word of the kernel's command line (the image file as written in the config, or "kernel").</summary>
    public string ProgramName { get; init; } = "kernel";
    /// <summary>Multiboot: the rest of the kernel's command line.</summary>
    public string Cmdline { get; init; } = "";
    public IReadOnlyList<BootModuleSpec> Modules { get; init; } = [];
    public IReadOnlyList<RegionContentSpec> RegionContents { get; init; } = [];

    public static readonly PlatformSpec Default = new();

    public string ModeName => PlatformNames.ModeName(Mode);
}


/// <summary>Names and fixed addresses of the boot platform, shared by the machine and the config binder.</summary>
public static class PlatformNames
{
    public const string FormatFlat = "flat", FormatElf = "elf", FormatMultiboot = "multiboot";
    public static readonly string[] Formats = [FormatFlat, FormatElf, FormatMultiboot];
    public static readonly string[] Modes = ["auto", "real", "protected", "long"];

    /// <summary>The local APIC and IOAPIC pages, which no memory region may cover when the irqchip is in the kernel.</summary>
    public const ulong LocalApicAddress = 0xfee00000, IoApicAddress = 0xfec00000;

    public static string ModeName(CpuMode mode) => mode switch
    {
        CpuMode.Real => "real",
        CpuMode.Protected => "protected",
        CpuMode.Long => "long",
        _ => mode.ToString().ToLowerInvariant(),
    };

}

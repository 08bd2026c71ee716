namespace KvmActors.Runtime.Boot;

/// <summary>The guest image to load.</summary>
public sealed record ImageSpec(string Format, byte[] Bytes, ulong LoadAddress, string Origin, string? Path);

/// <summary>Initial register and segment values, by name (rax, rip, cr0, efer; cs, tr, gdtr ...).</summary>
public sealed record CpuStateSpec(
    IReadOnlyDictionary<string, ulong> Registers,
    IReadOnlyDictionary<string, SegmentSpec> Segments);

/// <summary>
/// A segment register's initial value (real mode: base = selector * 16 is not implied; say both), each part
/// replacing the mode's where given. The attributes are kvm_segment's (Intel SDM vol. 3 §3.4.5): type 0-15,
/// DPL 0-3, and the 0/1 flags. GDTR and IDTR take only base and limit.
/// </summary>
public sealed record SegmentSpec(ushort? Selector, ulong? Base, uint? Limit)
{
    public byte? Type { get; init; }
    public byte? Dpl { get; init; }
    public byte? Db { get; init; }
    public byte? L { get; init; }
    public byte? G { get; init; }
    public byte? S { get; init; }
    public byte? Present { get; init; }
    public byte? Avl { get; init; }
    public byte? Unusable { get; init; }
}

/// <summary>The names a guest file's <c>registers</c> and <c>segments</c> take beyond the general registers.</summary>
public static class CpuStateNames
{
    /// <summary>Control registers and EFER (KVM_SET_SREGS).</summary>
    public static readonly string[] ControlRegisters = ["cr0", "cr2", "cr3", "cr4", "cr8", "efer"];
    /// <summary>Segment registers, the task register and the LDT register.</summary>
    public static readonly string[] Segments = ["cs", "ds", "es", "fs", "gs", "ss", "tr", "ldtr"];
    /// <summary>Descriptor-table registers: base and limit.</summary>
    public static readonly string[] Tables = ["gdtr", "idtr"];
}

/// <summary>
/// What the kernel side of a VM is built from (<see cref="Vm.Machine"/>): vCPUs, memory, image, entry state
/// and boot platform. Plain data, no HOCON: the config binder produces it, tests may build it by hand.
/// </summary>
public sealed record MachineSpec
{
    /// <summary>The config file it came from: named in the config errors the machine raises (bad image placement).</summary>
    public required string SourceFile { get; init; }
    public required int VcpuCount { get; init; }
    public required IReadOnlyList<MemoryRegionSpec> Memory { get; init; }
    public required ImageSpec Image { get; init; }
    public required CpuStateSpec Cpu { get; init; }
    public required IReadOnlyDictionary<int, CpuStateSpec> VcpuOverrides { get; init; }
    /// <summary>How the guest boots: CPU mode, image format, irqchip, CPUID mask, Multiboot command line and modules.</summary>
    public PlatformSpec Platform { get; init; } = PlatformSpec.Default;
}

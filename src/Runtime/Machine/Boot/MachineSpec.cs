namespace KvmActors.Runtime.Boot;

/// <summary>The guest image to load.</summary>
public sealed record ImageSpec(string Format, byte[] Bytes, ulong LoadAddress, string Origin, string? Path);

/// <summary>Initial register and segment values, by name (rax, rip, cs.base ...).</summary>
public sealed record CpuStateSpec(
    IReadOnlyDictionary<string, ulong> Registers,
    IReadOnlyDictionary<string, SegmentSpec> Segments);

/// <summary>A segment register's initial value (real mode: base = selector * 16 is not implied; say both).</summary>
public sealed record SegmentSpec(ushort? Selector, ulong? Base, uint? Limit);

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

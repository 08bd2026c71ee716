using KvmActors.Runtime.Bus;
using KvmActors.Runtime.Devices;
using KvmActors.Runtime.Memory;

namespace KvmActors.Runtime.Config;

/// <summary>What the VM does with an access to a port or MMIO address that no device claims.</summary>
public enum UnmappedAccessPolicy
{
    /// <summary>As real hardware: reads return all ones, writes are dropped; logged once per address.</summary>
    Ignore,
    /// <summary>The VM ends as a guest failure.</summary>
    Strict,
}

/// <summary>The guest image to load.</summary>
public sealed record ImageSpec(string Format, byte[] Bytes, ulong LoadAddress, string Origin, string? Path);

/// <summary>Initial register and segment values, by name (rax, rip, cs.base ...).</summary>
public sealed record CpuStateSpec(
    IReadOnlyDictionary<string, ulong> Registers,
    IReadOnlyDictionary<string, SegmentSpec> Segments);

/// <summary>A segment register's initial value (real mode: base = selector * 16 is not implied; say both).</summary>
public sealed record SegmentSpec(ushort? Selector, ulong? Base, uint? Limit);

/// <summary>One device entry of the guest config.</summary>
public sealed record DeviceSpec(
    string Name,
    string Type,
    IReadOnlyList<PortRange> Ports,
    IReadOnlyList<MmioRange> Mmio,
    IReadOnlyList<int> Irqs,
    DeviceOptions Options);

/// <summary>A guest as bound from its HOCON file (with defaults from reference.conf and --set overrides).</summary>
public sealed record GuestSpec
{
    public required string Name { get; init; }
    /// <summary>The config file it came from ("&lt;built-in&gt;" for the seed guest): named in every config error.</summary>
    public required string SourceFile { get; init; }
    public required string BaseDirectory { get; init; }
    public required int VcpuCount { get; init; }
    public required IReadOnlyList<MemoryRegionSpec> Memory { get; init; }
    public required ImageSpec Image { get; init; }
    public required string CpuMode { get; init; }
    public required CpuStateSpec Cpu { get; init; }
    public required IReadOnlyDictionary<int, CpuStateSpec> VcpuOverrides { get; init; }
    public required IReadOnlyList<DeviceSpec> Devices { get; init; }
    public required string HaltPolicy { get; init; }
    public required UnmappedAccessPolicy UnmappedIo { get; init; }
    public SupervisionPolicy VcpuSupervision { get; init; } = SupervisionPolicy.Default;
    public SupervisionPolicy DeviceSupervision { get; init; } = SupervisionPolicy.Default;
    /// <summary>Injected faults by vCPU index (none unless the config asks).</summary>
    public IReadOnlyDictionary<int, VcpuFaults> VcpuFaults { get; init; } = new Dictionary<int, VcpuFaults>();
    /// <summary>Injected faults by device name (none unless the config asks).</summary>
    public IReadOnlyDictionary<string, DeviceFaults> DeviceFaults { get; init; } = new Dictionary<string, DeviceFaults>();
    /// <summary>How the guest boots: CPU mode, image format, irqchip, CPUID mask, Multiboot command line and modules.</summary>
    public Boot.PlatformSpec Platform { get; init; } = Boot.PlatformSpec.Default;
    /// <summary>Runtime settings the guest file or --set gave (a <c>kvmactors { }</c> block), for the actor system's config.</summary>
    public Akka.Configuration.Config RuntimeConfig { get; init; } = Akka.Configuration.Config.Empty;
    /// <summary>The whole merged guest block, for settings bound elsewhere (supervision, faults).</summary>
    public required Akka.Configuration.Config Raw { get; init; }
}

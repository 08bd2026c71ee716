using KvmActors.Runtime.Boot;
using KvmActors.Sdk;

namespace KvmActors.Runtime.Config;

/// <summary>What the VM does with an access to a port or MMIO address that no device claims.</summary>
public enum UnmappedAccessPolicy
{
    /// <summary>As real hardware: reads return all ones, writes are dropped; logged once per address.</summary>
    Ignore,
    /// <summary>The VM ends as a guest failure.</summary>
    Strict,
}

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
    /// <summary>The kernel side: vCPUs, memory, image, entry state, boot platform.</summary>
    public required MachineSpec Machine { get; init; }
    public required IReadOnlyList<DeviceSpec> Devices { get; init; }
    public required string HaltPolicy { get; init; }
    public required UnmappedAccessPolicy UnmappedIo { get; init; }
    /// <summary>Where PCI BARs are laid out (<c>guest.pci</c>).</summary>
    public Vm.PciWindows Pci { get; init; } = Vm.PciWindows.Default;
    public SupervisionPolicy VcpuSupervision { get; init; } = SupervisionPolicy.Default;
    public SupervisionPolicy DeviceSupervision { get; init; } = SupervisionPolicy.Default;
    /// <summary>Injected faults by vCPU index (none unless the config asks).</summary>
    public IReadOnlyDictionary<int, VcpuFaults> VcpuFaults { get; init; } = new Dictionary<int, VcpuFaults>();
    /// <summary>Injected faults by device name (none unless the config asks).</summary>
    public IReadOnlyDictionary<string, DeviceFaults> DeviceFaults { get; init; } = new Dictionary<string, DeviceFaults>();
    /// <summary>A gdb stub for this VM (<c>guest.gdb</c>, <c>--gdb</c>); null: none, and the exit path costs nothing more.</summary>
    public Debug.GdbSpec? Gdb { get; init; }
    /// <summary>What <c>kvmactors test</c> expects of this guest (<c>guest.expect</c>); other commands ignore it.</summary>
    public GuestExpectation Expect { get; init; } = GuestExpectation.Default;
    /// <summary>Runtime settings the guest file or --set gave (a <c>kvmactors { }</c> block), for the actor system's config.</summary>
    public Akka.Configuration.Config RuntimeConfig { get; init; } = Akka.Configuration.Config.Empty;
    /// <summary>
    /// The config this guest was bound from (file, includes and --set merged, without defaults), as JSON (which is
    /// HOCON): a snapshot saves it so the restored VM is bound from the same config. Empty for a spec built in code.
    /// </summary>
    public string SourceConfig { get; init; } = "";
    /// <summary>Guest memory the VM reads into its end (<see cref="Vm.VmEnded.MemoryDumps"/>) before it releases memory; each range within one region.</summary>
    public IReadOnlyList<GuestMemoryRange> ReportMemory { get; init; } = [];
}

/// <summary>A range of guest-physical memory: [Address, Address + Length).</summary>
public sealed record GuestMemoryRange(ulong Address, ulong Length)
{
    public override string ToString() => $"[0x{Address:x}, 0x{Address + Length:x})";
}

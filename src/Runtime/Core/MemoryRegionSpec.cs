namespace KvmActors;

/// <summary>One guest-physical range backed by host memory.</summary>
public sealed record MemoryRegionSpec(string Name, ulong GuestAddress, ulong Size, bool ReadOnly);

/// <summary>The shape of the machine, for devices that report it to the guest (fw_cfg, Multiboot info).</summary>
public sealed record MachineInfo(int VcpuCount, ulong RamSize, IReadOnlyList<MemoryRegionSpec> Memory);

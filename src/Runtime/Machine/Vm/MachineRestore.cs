using KvmActors.Runtime.Snapshot;

namespace KvmActors.Runtime.Vm;

/// <summary>Fills region <paramref name="index"/> of a restored machine's memory (it checks what it loads).</summary>
public delegate void RegionLoader(int index, MemoryRegionSpec region, Span<byte> bytes);

/// <summary>What <see cref="Machine.Restore"/> builds a machine from: each vCPU's and the VM's saved state, and its memory.</summary>
public sealed record MachineRestore(IReadOnlyList<VcpuSavedState> Vcpus, VmSavedState Vm, RegionLoader LoadRegion);

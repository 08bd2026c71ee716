namespace KvmActors.Sdk;

/// <summary>Which address space a device access came through.</summary>
public enum AddressSpace { Port, Mmio }

/// <summary>
/// One guest access as a device sees it: the absolute address, the offset from the start of the
/// device's range that matched, and the width in bytes (1, 2, 4, or up to 8 for MMIO).
/// </summary>
public readonly record struct DeviceAccess(AddressSpace Space, ulong Address, ulong Offset, int Size, int VcpuId)
{
    /// <summary>All ones of the access width: what an open bus returns.</summary>
    public ulong AllOnes => Size >= 8 ? ulong.MaxValue : (1UL << (Size * 8)) - 1;
}

/// <summary>
/// The guest wrote to an I/O port (OUT). One-way: the vCPU does not wait, except for a device whose writes are
/// awaited (<see cref="DeviceTypeAttribute.AwaitsWrites"/>): then <paramref name="Seq"/> is not 0 and the vCPU waits
/// for a <see cref="ReadCompleted"/> with it (its value unused).
/// </summary>
public sealed record PortWrite(ushort Port, ushort Offset, int Size, uint Value, int VcpuId, long Seq = 0);

/// <summary>The guest reads an I/O port (IN). The vCPU waits for a <see cref="ReadCompleted"/> with the same Seq.</summary>
public sealed record PortRead(ushort Port, ushort Offset, int Size, int VcpuId, long Seq);

/// <summary>The guest wrote to a device's MMIO range. One-way.</summary>
public sealed record MmioWrite(ulong Address, ulong Offset, int Size, ulong Value, int VcpuId);

/// <summary>The guest reads a device's MMIO range; answered with <see cref="ReadCompleted"/>.</summary>
public sealed record MmioRead(ulong Address, ulong Offset, int Size, int VcpuId, long Seq);

/// <summary>A device's answer to a <see cref="PortRead"/> or <see cref="MmioRead"/>.</summary>
public sealed record ReadCompleted(long Seq, ulong Value);

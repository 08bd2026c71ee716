using KvmActors.Runtime.Kvm;

namespace KvmActors.Runtime.Memory;


/// <summary>Bounds-checked access to guest-physical memory, for loaders and device models.</summary>
public interface IGuestMemory
{
    /// <summary>Copy bytes into guest memory; throws <see cref="GuestMemoryException"/> if any byte is not backed.</summary>
    void Write(ulong guestAddress, ReadOnlySpan<byte> data);
    /// <summary>Copy bytes out of guest memory; throws if any byte is not backed.</summary>
    void Read(ulong guestAddress, Span<byte> destination);
    /// <summary>Whether [guestAddress, guestAddress+length) is entirely backed by memory.</summary>
    bool IsBacked(ulong guestAddress, ulong length);
    IReadOnlyList<MemoryRegionSpec> Regions { get; }
}

public sealed class GuestMemoryException(string message) : KvmActorsException(ErrorKind.Config, message);

/// <summary>
/// The guest's RAM/ROM: page-aligned anonymous mappings registered with KVM as memory slots.
/// Owned by the VM actor and released (munmap) when the VM stops.
/// </summary>
public sealed unsafe class GuestMemory : IGuestMemory, IDisposable
{
    public const ulong PageSize = 4096;

    private readonly List<(MemoryRegionSpec Spec, SafeMapping Map)> _regions = new();

    public IReadOnlyList<MemoryRegionSpec> Regions => _regions.Select(r => r.Spec).ToList();

    /// <summary>Total bytes of RAM (read-write regions).</summary>
    public ulong RamSize => (ulong)_regions.Where(r => !r.Spec.ReadOnly).Sum(r => (decimal)r.Spec.Size);

    /// <summary>Map every region and register it with the VM as slots 0..n-1.</summary>
    public static GuestMemory Create(KvmVm? vm, IEnumerable<MemoryRegionSpec> regions)
    {
        var mem = new GuestMemory();
        try
        {
            uint slot = 0;
            foreach (var spec in regions.OrderBy(r => r.GuestAddress))
            {
                Validate(spec, mem._regions.Select(r => r.Spec));
                var map = SafeMapping.Anonymous(spec.Size, $"guest memory region {spec.Name}");
                mem._regions.Add((spec, map));
                vm?.SetUserMemoryRegion(slot++, spec.GuestAddress, spec.Size, map.Address, spec.ReadOnly);
            }
            return mem;
        }
        catch { mem.Dispose(); throw; }
    }

    private static void Validate(MemoryRegionSpec spec, IEnumerable<MemoryRegionSpec> existing)
    {
        if (spec.Size == 0 || spec.Size % PageSize != 0 || spec.GuestAddress % PageSize != 0)
            throw new GuestMemoryException($"memory region '{spec.Name}' must be page-aligned with a non-zero size (address 0x{spec.GuestAddress:x}, size 0x{spec.Size:x})");
        foreach (var other in existing)
            if (spec.GuestAddress < other.GuestAddress + other.Size && other.GuestAddress < spec.GuestAddress + spec.Size)
                throw new GuestMemoryException($"memory regions '{other.Name}' and '{spec.Name}' overlap");
    }

    private Span<byte> Slice(ulong address, ulong length, bool forWrite)
    {
        foreach (var (spec, map) in _regions)
        {
            if (address >= spec.GuestAddress && address - spec.GuestAddress + length <= spec.Size && length <= spec.Size)
                return new Span<byte>((byte*)map.Address + (address - spec.GuestAddress), checked((int)length));
        }
        throw new GuestMemoryException($"guest range 0x{address:x}..0x{address + length:x} is not backed by one memory region{(forWrite ? " (write)" : "")}");
    }

    public void Write(ulong guestAddress, ReadOnlySpan<byte> data) => data.CopyTo(Slice(guestAddress, (ulong)data.Length, true));

    public void Read(ulong guestAddress, Span<byte> destination) => Slice(guestAddress, (ulong)destination.Length, false).CopyTo(destination);

    /// <summary>Reads up to <paramref name="max"/> bytes, stopping at the end of backed memory (for disassembly).</summary>
    public byte[] ReadAvailable(ulong guestAddress, int max)
    {
        foreach (var (spec, map) in _regions)
            if (guestAddress >= spec.GuestAddress && guestAddress < spec.GuestAddress + spec.Size)
            {
                var n = (int)Math.Min((ulong)max, spec.GuestAddress + spec.Size - guestAddress);
                return new Span<byte>((byte*)map.Address + (guestAddress - spec.GuestAddress), n).ToArray();
            }
        return [];
    }

    /// <summary>Whether the address lies in a read-only region (ROM).</summary>
    public bool IsReadOnly(ulong guestAddress) =>
        _regions.Any(r => r.Spec.ReadOnly && guestAddress >= r.Spec.GuestAddress && guestAddress - r.Spec.GuestAddress < r.Spec.Size);

    public bool IsBacked(ulong guestAddress, ulong length) =>
        _regions.Any(r => guestAddress >= r.Spec.GuestAddress && guestAddress - r.Spec.GuestAddress + length <= r.Spec.Size);

    public void Dispose()
    {
        foreach (var (_, map) in _regions) map.Dispose();
        _regions.Clear();
    }
}

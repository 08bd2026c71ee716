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
/// The pages of one memory region the guest wrote since the last <see cref="GuestMemory.TakeDirtyPages"/>:
/// bit n of <see cref="Bitmap"/> (word n / 64, bit n % 64) is page n of the region.
/// </summary>
public sealed record DirtyRegion(int RegionIndex, MemoryRegionSpec Spec, ulong[] Bitmap)
{
    public int DirtyPageCount => Bitmap.Sum(w => System.Numerics.BitOperations.PopCount(w));

    /// <summary>The dirty pages' numbers within the region, ascending.</summary>
    public IEnumerable<ulong> DirtyPages()
    {
        for (var w = 0; w < Bitmap.Length; w++)
            for (var bits = Bitmap[w]; bits != 0; bits &= bits - 1)
                yield return (ulong)w * 64 + (ulong)System.Numerics.BitOperations.TrailingZeroCount(bits);
    }
}

/// <summary>
/// The guest's RAM/ROM: page-aligned anonymous mappings registered with KVM as memory slots.
/// Owned by the VM actor and released (munmap) when the VM stops.
/// </summary>
public sealed unsafe class GuestMemory : IGuestMemory, IDisposable
{
    public const ulong PageSize = 4096;

    private readonly List<(MemoryRegionSpec Spec, SafeMapping Map)> _regions = new();
    private readonly KvmVm? _vm;
    private bool _dirtyLogging;

    private GuestMemory(KvmVm? vm) { _vm = vm; }

    public IReadOnlyList<MemoryRegionSpec> Regions => _regions.Select(r => r.Spec).ToList();

    /// <summary>Total bytes of RAM (read-write regions).</summary>
    public ulong RamSize => (ulong)_regions.Where(r => !r.Spec.ReadOnly).Sum(r => (decimal)r.Spec.Size);

    /// <summary>Map every region and register it with the VM as slots 0..n-1.</summary>
    public static GuestMemory Create(KvmVm? vm, IEnumerable<MemoryRegionSpec> regions)
    {
        var mem = new GuestMemory(vm);
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

    /// <summary>
    /// A region's whole backing, in <see cref="Regions"/> order (= slot order), to save it to a file or load one back.
    /// Writes through it are the host's, which KVM's dirty log does not see.
    /// </summary>
    public Span<byte> RegionBytes(int regionIndex)
    {
        var (spec, map) = _regions[regionIndex];
        return new Span<byte>((void*)map.Address, checked((int)spec.Size));
    }

    /// <summary>Whether the writable slots are registered with KVM_MEM_LOG_DIRTY_PAGES.</summary>
    public bool DirtyLogging => _dirtyLogging;

    /// <summary>
    /// Turn on KVM's dirty-page log for every writable region (re-registering its slot with KVM_MEM_LOG_DIRTY_PAGES;
    /// read-only regions cannot be written by the guest). Pages written from now on show in <see cref="TakeDirtyPages"/>.
    /// </summary>
    public void StartDirtyLog() => SetDirtyLogging(true);

    /// <summary>Turn the dirty-page log off again (the slots go back to their plain flags).</summary>
    public void StopDirtyLog() => SetDirtyLogging(false);

    private void SetDirtyLogging(bool on)
    {
        var vm = RequireVm();
        for (var slot = 0; slot < _regions.Count; slot++)
        {
            var (spec, map) = _regions[slot];
            if (!spec.ReadOnly) vm.SetUserMemoryRegion((uint)slot, spec.GuestAddress, spec.Size, map.Address, readOnly: false, logDirty: on);
        }
        _dirtyLogging = on;
    }

    /// <summary>
    /// KVM_GET_DIRTY_LOG of every logged (writable) region: the pages the guest wrote since the previous call (or since
    /// <see cref="StartDirtyLog"/>). KVM clears the log and write-protects the pages again as it answers, which is what
    /// iterative pre-copy needs. Only guest writes are logged, not the host's writes through the mapping.
    /// </summary>
    public IReadOnlyList<DirtyRegion> TakeDirtyPages()
    {
        var vm = RequireVm();
        if (!_dirtyLogging) throw new InvalidOperationException("the dirty-page log is not started (StartDirtyLog)");
        var result = new List<DirtyRegion>();
        for (var slot = 0; slot < _regions.Count; slot++)
        {
            var spec = _regions[slot].Spec;
            if (spec.ReadOnly) continue;
            var bitmap = new ulong[(spec.Size / PageSize + 63) / 64];
            vm.GetDirtyLog((uint)slot, bitmap);
            result.Add(new DirtyRegion(slot, spec, bitmap));
        }
        return result;
    }

    private KvmVm RequireVm() =>
        _vm ?? throw new InvalidOperationException("this guest memory is not registered with a KVM VM");

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

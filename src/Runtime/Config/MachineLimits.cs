using System.Runtime.Intrinsics.X86;

namespace KvmActors.Runtime.Config;

/// <summary>What a guest's memory map must fit in, checked when the config is bound.</summary>
public static class MachineLimits
{
    /// <summary>
    /// The guest's physical address width: the host's CPUID 0x80000008 EAX[7:0] (MAXPHYADDR), which KVM passes
    /// on to guests. Where CPUID cannot be read, 36 bits: every x86-64 CPU has at least that (a conservative bound).
    /// </summary>
    public static int PhysicalAddressBits { get; } = ReadPhysicalAddressBits();

    public static string PhysicalAddressSource { get; } =
        X86Base.IsSupported ? "the host's CPUID 0x80000008" : "a conservative 36 bits: CPUID is not readable here";

    /// <summary>First guest-physical address beyond the guest's reach.</summary>
    public static ulong GuestPhysicalLimit => 1UL << PhysicalAddressBits;

    /// <summary>
    /// How much guest memory the host may be asked to map: 64 TiB, half of x86-64's 47-bit user address space
    /// (4-level paging), so the runtime keeps room for itself. Mappings are reserved lazily (MAP_NORESERVE),
    /// so this bounds address space, not RAM.
    /// </summary>
    public const ulong HostMappable = 1UL << 46;

    private static int ReadPhysicalAddressBits()
    {
        if (!X86Base.IsSupported) return 36;
        var (maxExtended, _, _, _) = X86Base.CpuId(unchecked((int)0x80000000), 0);
        if ((uint)maxExtended < 0x80000008) return 36;
        var bits = X86Base.CpuId(unchecked((int)0x80000008), 0).Eax & 0xff;
        return bits is >= 32 and <= 52 ? bits : 36;
    }
}

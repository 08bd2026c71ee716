using KvmActors.Runtime.Kvm;
using KvmActors.Runtime.Memory;

namespace KvmActors.Runtime.Boot;

/// <summary>What <see cref="KvmPrivatePages.Set"/> did, for the VM's log.</summary>
public sealed record KvmPrivatePagesResult(bool TssAddressSet, bool IdentityMapAddressSet, IReadOnlyList<string> Notes)
{
    public override string ToString() =>
        $"TSS {(TssAddressSet ? $"at 0x{BootLayout.KvmTssAddress:x}" : "not set")}, identity map {(IdentityMapAddressSet ? $"at 0x{BootLayout.KvmIdentityMapAddress:x}" : "not set")}" +
        (Notes.Count > 0 ? " (" + string.Join("; ", Notes) + ")" : "");
}

/// <summary>
/// KVM_SET_TSS_ADDR and KVM_SET_IDENTITY_MAP_ADDR: guest-physical pages KVM keeps for itself on hosts
/// that need them (Intel VMX without unrestricted guest, for real mode and non-paged protected mode).
/// Both must be set before the first vCPU is created, within the first 4 GiB, outside every memory region.
/// Set only where KVM_CHECK_EXTENSION reports the capability; a refusal is noted, not thrown,
/// because KVMs that do not need the pages may reject them.
/// </summary>
public static class KvmPrivatePages
{
    public static KvmPrivatePagesResult Set(KvmVm vm, IReadOnlyList<MemoryRegionSpec>? regions = null)
    {
        var notes = new List<string>();
        var tss = TrySet(vm, KvmCap.SetTssAddr, "KVM_SET_TSS_ADDR", new GuestRange(BootLayout.KvmTssAddress, BootLayout.KvmTssAddress + BootLayout.KvmTssSize, "KVM TSS"),
            regions, notes, () => vm.SetTssAddr(BootLayout.KvmTssAddress));
        var identity = TrySet(vm, KvmCap.SetIdentityMapAddr, "KVM_SET_IDENTITY_MAP_ADDR", new GuestRange(BootLayout.KvmIdentityMapAddress, BootLayout.KvmIdentityMapAddress + BootLayout.PageSize, "KVM identity map"),
            regions, notes, () => vm.SetIdentityMapAddr(BootLayout.KvmIdentityMapAddress));
        return new KvmPrivatePagesResult(tss, identity, notes);
    }

    private static bool TrySet(KvmVm vm, KvmCap cap, string name, GuestRange range, IReadOnlyList<MemoryRegionSpec>? regions, List<string> notes, Action set)
    {
        int supported;
        try { supported = vm.CheckExtension(cap); }
        catch (KvmException e) { notes.Add($"{name}: capability check failed ({e.Message})"); return false; }
        if (supported <= 0) { notes.Add($"{name}: not offered by this KVM"); return false; }

        var clash = regions?.FirstOrDefault(r => range.Overlaps(new GuestRange(r.GuestAddress, r.GuestAddress + r.Size)));
        if (clash is not null)
        {
            notes.Add($"{name}: skipped, {range} overlaps memory region '{clash.Name}'");
            return false;
        }

        try { set(); return true; }
        catch (KvmException e) { notes.Add($"{name}: refused ({e.Message})"); return false; }
    }
}

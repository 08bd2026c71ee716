using KvmActors.Sdk;
using KvmActors.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace KvmActors.Tests.Iommu;

/// <summary>
/// A q35 machine with a split irqchip, an intel-iommu and an edu on /dev/kvm: a guest sets up root, context and page
/// tables and the interrupt remapping table, DMAs through the IOMMU, and takes the edu's interrupt through the remapped
/// IOAPIC and as a remapped MSI.
/// </summary>
public sealed class IommuGuestTests(ITestOutputHelper output) : KvmTestKit(output)
{
    [KvmFact]
    public void A_guest_dmas_through_its_vt_d_tables_sees_a_blocked_write_recorded_and_takes_remapped_ioapic_and_msi_interrupts()
    {
        var ended = Run(Guest(IommuGuests.Guest()), TimeSpan.FromSeconds(30));

        Assert.True(ended.Reason == VmEndReason.GuestExit, $"{ended} {ended.Failure}");
        Assert.True((IommuGuests.AllPassed << 1 | 1) == ended.ExitStatus,
            $"checks passed: 0x{(ended.ExitStatus >> 1) & 0xf:x} of 0xf (DMA 1, fault 2, IOAPIC 4, MSI 8)");
    }
}

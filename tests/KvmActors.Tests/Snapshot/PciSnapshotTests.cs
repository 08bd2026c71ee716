using System.Globalization;
using KvmActors.Tests.DevicesOnKvm;
using Xunit;
using Xunit.Abstractions;

namespace KvmActors.Tests.Snapshot;

/// <summary>A snapshot of a guest that moved a PCI BAR: the restored VM routes the BAR where the guest put it.</summary>
public sealed class PciSnapshotTests(ITestOutputHelper output) : SnapshotTestKit(output)
{
    [KvmFact]
    public void A_restored_vm_reaches_a_moved_bar_at_its_new_place_and_the_device_counts_on()
    {
        var sink = SinkName();
        var spec = Guest(SamplePluginTests.Conf(DeviceGuests.PciCountForever(0x30000), sink, """
            pci.mmio-window = "0x20000-0x2ffff"
            devices.pci {
              type = pci-host
              ports = ["0xcf8-0xcff"]
            }
            devices.testdev.type = pci-testdev
            """));
        var dir = NewSnapshotDir();
        var (before, _) = RunThenSnapshot(spec, sink, 5 * 9, dir);
        var after = RunRestoredFor(dir, SinkName(), 5 * 9);

        // Together one run: 1, 2, 3, ... with no gap and no all-ones (the BAR's old place, or nothing, would read that).
        var lines = (before + after).Split('\n', StringSplitOptions.RemoveEmptyEntries)[..^1]; // the last may be cut short
        Assert.True(lines.Length >= 9, before + after);
        Assert.Equal(Enumerable.Range(1, lines.Length).Select(n => (uint)n), lines.Select(l => uint.Parse(l, NumberStyles.HexNumber)));
    }
}

using KvmActors.Runtime.Config;
using KvmActors.Runtime.Vm;
using KvmActors.Sdk;
using KvmActors.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace KvmActors.Tests.DevicesOnKvm;

/// <summary>
/// Real guests on KVM driving the PCI host bridge through 0xcf8/0xcfc: a bus scan, BAR sizing, BAR moves whose
/// routing follows at once (the next instruction reaches the device at its new place), and a plug-in PCI device.
/// </summary>
public sealed class PciGuestTests(ITestOutputHelper output) : KvmTestKit(output, SamplePluginTests.PluginConfig)
{
    // Real mode reaches below 1 MiB only: the memory window sits above the guest's 64 KiB of RAM.
    private const string Bus = """
        pci.mmio-window = "0x20000-0x2ffff"
        devices.pci {
          type = pci-host
          ports = ["0xcf8-0xcff"]
        }
        """;

    [KvmFact]
    public void A_guest_scans_bus_0_sizes_and_moves_the_pci_testdev_bars_and_reaches_the_device_where_they_now_are()
    {
        var sink = SinkName();
        var ended = Run(Guest(SamplePluginTests.Conf(DeviceGuests.PciScanAndMove(0x30000, 0xd000), sink,
            Bus + "\ndevices.testdev.type = pci-testdev")));

        Assert.Equal(VmEndReason.Halted, ended.Reason);
        Assert.Equal(
            "12378086\n" + // 00:00.0 the host bridge (Intel 440FX)
            "00051b36\n" + // 00:01.0 pci-testdev
            "ffffffff\n" + // nothing in slots 2 and 3
            "ffffffff\n" +
            "00020000\n" + // BAR 0 where the VM's layout put it: the start of the memory window
            "fffff000\n" + // all ones written: 4 KiB, 32-bit, not prefetchable
            "00030000\n" + // moved
            "00000003\n" + // three hits counted by the device at its new place
            "6f696d6d\n" + // "mmio" of "mmio-no-eventfd", read there
            "ffffffff\n" + // the old place is no longer the device's
            "0000d001\n" + // BAR 1 moved to 0xd000 (bit 0: I/O)
            "00000002\n",  // two hits at the moved I/O BAR
            SinkText(sink));
    }

    [KvmFact]
    public void A_plugin_pci_device_gets_a_slot_and_its_bar_accesses_with_the_bar_and_offset()
    {
        var sink = SinkName();
        var ended = Run(Guest(SamplePluginTests.Conf(DeviceGuests.PciPluginProbe(), sink, Bus + "\ndevices.sample.type = sample-pci")));

        Assert.Equal(VmEndReason.Halted, ended.Reason);
        Assert.Equal(
            "00011234\n" + // vendor 0x1234, device 0x0001 in slot 1
            "0000c001\n" + // its I/O BAR at the start of the default I/O window
            "12345678\n" + // offset 0 read back
            "00000008\n",  // BAR 0, offset 8
            SinkText(sink));
    }

    [KvmFact]
    public void A_pci_device_given_ports_is_a_config_error_naming_the_key()
    {
        var spec = Guest(SamplePluginTests.Conf(Guests.Seed, SinkName(), Bus + """

            devices.testdev {
              type = pci-testdev
              ports = ["0x700"]
            }
            """));
        var (_, owner) = Start(spec);
        var ended = owner.ExpectMsg<VmEnded>(TimeSpan.FromSeconds(20));
        Assert.Equal(VmEndReason.Fault, ended.Reason);
        Assert.Contains("guest.devices.testdev.ports", ended.Detail);
        Assert.Contains("PCI device", ended.Detail);
    }

    [Fact]
    public void A_pci_window_that_is_not_one_range_is_a_config_error()
    {
        var e = Assert.Throws<ConfigException>(() => Guest(SamplePluginTests.Conf(Guests.Seed, SinkName(), "pci.io-window = []")));
        Assert.Equal("guest.pci.io-window", e.Key);
    }
}

using KvmActors.Runtime.Config;
using KvmActors.Runtime.Vm;
using KvmActors.Sdk;
using KvmActors.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace KvmActors.Tests.DevicesOnKvm;

/// <summary>
/// MMIO exits on KVM routed to the device whose <c>mmio</c> range covers the address (the sample plug-in
/// mapped above the guest's 64 KiB of RAM), all ones from unmapped addresses, and overlapping ranges
/// rejected in config.
/// </summary>
public sealed class MmioRoutingTests(ITestOutputHelper output) : KvmTestKit(output, SamplePluginTests.PluginConfig)
{
    private const uint CounterAddress = 0x10000; // just above RAM (0..64K), reachable in real mode with DS = 0x1000
    private const uint UnmappedAddress = 0x20000;

    private static string Counter(string mmio = "0x10000-0x10fff") => $$"""
        devices.counter {
          type = sample-counter
          mmio = ["{{mmio}}"]
          options {
            initial = 0x1000
            step = 0x10
          }
        }
        """;

    [KvmFact]
    public void A_guest_writes_and_reads_a_device_through_its_mmio_range_and_unmapped_mmio_reads_all_ones()
    {
        var sink = SinkName();
        var ended = Run(Guest(SamplePluginTests.Conf(DeviceGuests.CounterOnMmio(CounterAddress, UnmappedAddress), sink, Counter())));

        Assert.Equal(VmEndReason.Halted, ended.Reason);
        Assert.Equal(
            "00001105\n" + // a 2-byte store of 5 and a 4-byte store of 0x100 added to initial 0x1000
            "00001115\n" + // the second read sees the step added by the first
            "00000002\n" + // WRITES, at offset 4 of the range
            "ffffffff\n" + // a 4-byte read where nothing is mapped
            "000000ff\n",  // a 1-byte one
            SinkText(sink));
        // Two stores, three reads of the device, two of the unmapped address: one exit each.
        Assert.Equal(7, Assert.Single(ended.Vcpus).ExitsByReason.GetValueOrDefault("Mmio"));
    }

    [KvmFact]
    public void An_unmapped_mmio_read_in_strict_mode_is_a_guest_failure_naming_the_address()
    {
        var ended = Run(Guest(SamplePluginTests.Conf(DeviceGuests.CounterOnMmio(CounterAddress, UnmappedAddress), SinkName(),
            Counter() + "\nunmapped-io = strict")));

        Assert.Equal(VmEndReason.GuestFailure, ended.Reason);
        var failure = Assert.IsType<GuestFailureInfo>(ended.Failure);
        Assert.Contains("MMIO address 0x20000", failure.Explanation);
    }

    [Fact]
    public void Overlapping_mmio_ranges_are_a_config_error_naming_both_devices()
    {
        var extra = Counter() + """

            devices.second {
              type = sample-counter
              mmio = ["0x10800-0x117ff"]
            }
            """;
        var e = Assert.Throws<ConfigException>(() => Guest(SamplePluginTests.Conf(Guests.Seed, SinkName(), extra)));

        Assert.Equal("guest.devices.second.mmio", e.Key);
        Assert.Equal("test.conf", e.File);
        Assert.Contains("'counter'", e.Message);
        Assert.Contains("'second'", e.Message);
        Assert.Contains("0x10800-0x117ff", e.Message);
    }

    [Fact]
    public void Touching_but_not_overlapping_mmio_ranges_are_accepted()
    {
        var extra = Counter() + """

            devices.second {
              type = sample-counter
              mmio = ["0x11000-0x11fff"]
            }
            """;
        var spec = Guest(SamplePluginTests.Conf(Guests.Seed, SinkName(), extra));
        Assert.Equal(2, spec.Devices.Count(d => d.Type == "sample-counter"));
    }

    [Fact]
    public void Overlapping_mmio_ranges_through_the_cli_exit_2_naming_both_devices()
    {
        var r = Kvmactors.Run("run", "hocon/guests/debug-exit.conf",
            "--set", "guest.devices.a.type=debugcon", "--set", "guest.devices.a.mmio=[\"0x10000-0x10fff\"]",
            "--set", "guest.devices.b.type=debugcon", "--set", "guest.devices.b.mmio=[\"0x10ff8-0x10fff\"]");

        Assert.Equal(2, r.ExitCode);
        Assert.Equal("", r.Stdout);
        Assert.Matches(@"guest\.devices\.[ab]\.mmio", r.Stderr);
        Assert.Contains("'a'", r.Stderr);
        Assert.Contains("'b'", r.Stderr);
    }
}

using System.Globalization;
using KvmActors.Sdk;
using KvmActors.Tests.Qemu;
using KvmActors.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace KvmActors.Tests.Acpi;

/// <summary>ACPI tables, PM timer and RTC on /dev/kvm, as a guest looking for them sees them.</summary>
public sealed class AcpiKvmTests(ITestOutputHelper output) : KvmTestKit(output)
{
    [KvmFact]
    public void A_guest_finds_the_fadt_through_the_rsdp_and_the_pm_timer_runs_at_its_rate_against_the_rtc()
    {
        var sink = SinkName();
        var ended = Run(Guest(QemuGuests.ProtectedIrqchipGuest(AcpiGuests.PmTimerAgainstRtc(), AcpiGuests.Load, $$"""
            com1.options.sink = "memory:{{sink}}"
            pm {
              type = acpi-pm
              ports = ["0x600-0x60b"]
            }
            {{Qemu.PcTestdevKvmTests.RtcEntry + Qemu.PcTestdevKvmTests.ExitEntry}}
            """)), TimeSpan.FromSeconds(20));

        var text = SinkText(sink);
        Assert.True(ended.Reason == VmEndReason.GuestExit, $"{ended} {ended.Failure} {text}");
        Assert.Equal((AcpiGuests.Done << 1) | 1, ended.ExitStatus);
        var parts = text.Trim().Split(' ');
        var t1 = uint.Parse(parts[0], NumberStyles.HexNumber);
        var t2 = uint.Parse(parts[1], NumberStyles.HexNumber);
        var ticks = (t2 - t1) & 0xffffff;
        // One RTC second: 3579545 ticks. The guest notices each second change a few exits late, and on these
        // shared 2-CPU machines an exit now and then takes tens of ms: hence 10%.
        Assert.InRange(ticks, 3_579_545 * 0.9, 3_579_545 * 1.1);
    }

    [KvmFact]
    public void Acpi_tables_on_a_guest_without_ram_at_the_bios_area_are_a_config_error_naming_guest_acpi()
    {
        var ended = Run(Guest("""
            guest {
              acpi = true
              memory = [
                { address = 0, size = 64K }
              ]
              image.inline = "f4"
            }
            """));
        Assert.Equal(VmEndReason.Fault, ended.Reason);
        Assert.Equal(2, ended.ExitStatus);
        Assert.Contains("guest.acpi: the ACPI tables need writable RAM", ended.Detail);
    }
}

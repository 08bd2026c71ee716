using KvmActors.Sdk;
using KvmActors.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace KvmActors.Tests.Qemu;

/// <summary>pc-testdev and the RTC on /dev/kvm: their IRQs reach the guest through KVM's IOAPIC.</summary>
public sealed class PcTestdevKvmTests(ITestOutputHelper output) : KvmTestKit(output)
{
    internal const string ExitEntry = """
        exit {
          type = debug-exit
          ports = ["0xf4"]
        }
        """;

    internal const string RtcEntry = """
        rtc {
          type = cmos-rtc
          ports = ["0x70-0x71"]
        }
        """;

    internal const string TestdevEntry = """
        testdev {
          type = pc-testdev
          ports = ["0xe0-0xeb", "0x2000-0x2017"]
          mmio = ["0xff000000-0xff00ffff"]
        }
        """ + ExitEntry;

    [KvmFact]
    public void An_irq_raised_through_pc_testdev_is_taken_through_the_ioapic_by_the_next_instruction()
    {
        var ended = Run(Guest(QemuGuests.ProtectedIrqchipGuest(QemuGuests.PcTestdevIrq(), QemuGuests.Load, TestdevEntry)), TimeSpan.FromSeconds(20));

        Assert.True(ended.Reason == VmEndReason.GuestExit, $"{ended} {ended.Failure}");
        // v = 0x41: the interrupt was taken right after the OUT that raised the line.
        Assert.Equal((0x41 << 1) | 1, ended.ExitStatus);
    }

    [KvmFact]
    public void The_rtc_update_ended_interrupt_arrives_on_irq8_through_the_ioapic_with_irqf_and_uf_in_register_c()
    {
        var ended = Run(Guest(QemuGuests.ProtectedIrqchipGuest(QemuGuests.RtcUpdateIrq(), QemuGuests.Load, RtcEntry + ExitEntry)), TimeSpan.FromSeconds(20));

        Assert.True(ended.Reason == VmEndReason.GuestExit, $"{ended} {ended.Failure}");
        Assert.Equal((9 << 1) | 1, ended.ExitStatus); // register C: IRQF | UF
    }
}

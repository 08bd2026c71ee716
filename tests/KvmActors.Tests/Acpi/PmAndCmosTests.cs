using KvmActors.Devices.AcpiPm;
using KvmActors.Devices.Cmos;
using Xunit;

namespace KvmActors.Tests.Acpi;

/// <summary>The ACPI PM registers and the CMOS/RTC models, with a clock the test moves.</summary>
public sealed class PmAndCmosTests
{
    [Fact]
    public void Pm_timer_counts_at_3_579545_MHz_and_wraps_at_24_bits()
    {
        var now = TimeSpan.Zero;
        var pm = new AcpiPmRegisters(() => now);
        Assert.Equal(0UL, pm.Read(8, 4));
        now = TimeSpan.FromMilliseconds(1);
        Assert.InRange(pm.Read(8, 4), 3579UL, 3580UL);
        now = TimeSpan.FromSeconds(1);
        Assert.InRange(pm.Read(8, 4), 3_579_544UL, 3_579_545UL);
        now = TimeSpan.FromSeconds(16777216 / AcpiPmRegisters.TimerHz) + TimeSpan.FromMilliseconds(1);
        Assert.InRange(pm.Read(8, 4), 3570UL, 3590UL); // wrapped past 0xffffff
    }

    [Fact]
    public void Pm1_control_keeps_sci_en_and_reports_s3_and_s5_writes()
    {
        var pm = new AcpiPmRegisters(() => TimeSpan.Zero);
        Assert.Equal(1UL, pm.Read(4, 2));
        Assert.Equal(SleepRequest.None, pm.Write(4, 2, 0x0400)); // SLP_TYP without SLP_EN
        Assert.Equal(SleepRequest.Suspend, pm.Write(4, 2, 0x2400)); // s3.c: SLP_EN | SLP_TYP 1
        Assert.Equal(0x0401UL, pm.Read(4, 2)); // SLP_EN reads 0
        Assert.Equal(SleepRequest.PowerOff, pm.Write(4, 2, 0x2000));
    }

    [Fact]
    public void Pm1_enable_is_read_write_and_status_is_write_one_to_clear()
    {
        var pm = new AcpiPmRegisters(() => TimeSpan.Zero);
        pm.Write(2, 2, 0x400); // s3.c: RTC_EN
        Assert.Equal(0x400UL, pm.Read(2, 2));
        Assert.Equal(0x0400_0000UL, pm.Read(0, 4));
        pm.Write(0, 2, 0xffff);
        Assert.Equal(0UL, pm.Read(0, 2));
    }

    private static readonly DateTime Fixed = new(2026, 12, 1, 21, 5, 9, DateTimeKind.Utc);

    private static byte Reg(CmosRtc c, byte reg) { c.Write(0, reg); return c.Read(1); }

    [Fact]
    public void Rtc_gives_the_host_time_in_bcd_24_hour_and_binary_when_asked()
    {
        var c = new CmosRtc(() => Fixed, 2, 128UL << 20, 0);
        Assert.Equal(0x09, Reg(c, 0));
        Assert.Equal(0x05, Reg(c, 2));
        Assert.Equal(0x21, Reg(c, 4));
        Assert.Equal(0x01, Reg(c, 7));
        Assert.Equal(0x12, Reg(c, 8));
        Assert.Equal(0x26, Reg(c, 9));
        Assert.Equal(0x20, Reg(c, CmosRtc.Century));
        c.Write(0, CmosRtc.RegB);
        c.Write(1, 0x06); // binary, 24-hour
        Assert.Equal(21, Reg(c, 4));
        Assert.Equal(26, Reg(c, 9));
        c.Write(0, CmosRtc.RegB);
        c.Write(1, 0x00); // BCD, 12-hour: 21h is 9 PM
        Assert.Equal(0x89, Reg(c, 4));
    }

    [Fact]
    public void Rtc_writes_move_the_clock_and_update_in_progress_shows_at_the_end_of_a_second()
    {
        var now = Fixed;
        var c = new CmosRtc(() => now, 1, 1UL << 20, 0);
        c.Write(0, 2);
        c.Write(1, 0x42);
        Assert.Equal(0x42, Reg(c, 2));
        now = now.AddMinutes(1);
        Assert.Equal(0x43, Reg(c, 2)); // the clock runs on from the set time
        Assert.Equal(0, Reg(c, CmosRtc.RegA) & 0x80);
        now = now.AddTicks(TimeSpan.TicksPerSecond - 1000);
        Assert.Equal(0x80, Reg(c, CmosRtc.RegA) & 0x80);
        Assert.Equal(0x80, Reg(c, CmosRtc.RegD));
    }

    [Fact]
    public void Cmos_holds_memory_sizes_cpu_count_and_the_nmi_mask()
    {
        var c = new CmosRtc(() => Fixed, 8, 128UL << 20, 1UL << 30);
        Assert.Equal(640, Reg(c, 0x15) | Reg(c, 0x16) << 8);
        Assert.Equal(0xffff, Reg(c, 0x17) | Reg(c, 0x18) << 8); // 127 MiB does not fit: capped
        Assert.Equal(0xffff, Reg(c, 0x30) | Reg(c, 0x31) << 8);
        var small = new CmosRtc(() => Fixed, 1, 32UL << 20, 0);
        Assert.Equal(31 * 1024, Reg(small, 0x17) | Reg(small, 0x18) << 8);
        Assert.Equal((128 - 16) * 16, Reg(c, 0x34) | Reg(c, 0x35) << 8);
        Assert.Equal(0x4000, Reg(c, 0x5b) | Reg(c, 0x5c) << 8 | Reg(c, 0x5d) << 16);
        Assert.Equal(7, Reg(c, 0x5f));
        c.Write(0, 0x80 | 0x40);
        Assert.True(c.NmiMasked);
        c.Write(1, 0x5a);
        Assert.Equal(0x5a, Reg(c, 0x40));
        Assert.False(c.NmiMasked);
        Assert.Equal(0xff, c.Read(0));
    }

    private static void Set(CmosRtc c, byte reg, byte value) { c.Write(0, reg); c.Write(1, value); }

    [Fact]
    public void Rtc_update_ended_flag_rises_each_second_and_raises_irq8_only_when_enabled_and_reading_c_clears_it()
    {
        var now = Fixed.AddMilliseconds(500);
        var c = new CmosRtc(() => now, 1, 1UL << 20, 0);
        Set(c, CmosRtc.RegA, 0x20); // no periodic rate: only the update flag moves
        Assert.Equal(0, Reg(c, CmosRtc.RegC));
        now = now.AddSeconds(1);
        Assert.Equal(CmosRtc.Uf, Reg(c, CmosRtc.RegC)); // UF without UIE: a flag, no interrupt
        Assert.False(c.Irq);
        Assert.Equal(0, Reg(c, CmosRtc.RegC));          // cleared by the read
        Assert.Null(c.NextInterruptIn());
        Set(c, CmosRtc.RegB, 0x02 | CmosRtc.Uie);
        Assert.Equal(TimeSpan.FromMilliseconds(500), c.NextInterruptIn());
        now = now.AddSeconds(1);
        Assert.Equal(CmosRtc.Uf, c.CatchUp());
        Assert.True(c.Irq);
        Assert.Equal(CmosRtc.Irqf | CmosRtc.Uf, Reg(c, CmosRtc.RegC));
        Assert.False(c.Irq);
        Set(c, CmosRtc.RegB, 0x02 | CmosRtc.Set | CmosRtc.Uie); // SET: the clock does not update
        now = now.AddSeconds(3);
        Assert.Equal(0, Reg(c, CmosRtc.RegC));
    }

    [Fact]
    public void Rtc_alarm_matches_the_alarm_registers_with_dont_care_values_and_periodic_flag_follows_register_a()
    {
        var now = Fixed.AddMilliseconds(100);
        var c = new CmosRtc(() => now, 1, 1UL << 20, 0);
        Set(c, CmosRtc.RegA, 0x20);
        Set(c, CmosRtc.SecondsAlarm, 0x11); // 21:05:11 in BCD
        Set(c, CmosRtc.MinutesAlarm, 0x05);
        Set(c, CmosRtc.HoursAlarm, 0x21);
        Set(c, CmosRtc.RegB, 0x02 | CmosRtc.Aie);
        now = now.AddSeconds(1);                                     // 21:05:10
        Assert.Equal(CmosRtc.Uf, Reg(c, CmosRtc.RegC));
        now = now.AddSeconds(1);                                     // 21:05:11
        Assert.Equal(CmosRtc.Af, c.CatchUp() & CmosRtc.Af);
        Assert.Equal(CmosRtc.Irqf | CmosRtc.Af | CmosRtc.Uf, Reg(c, CmosRtc.RegC));
        now = now.AddSeconds(1);
        Assert.Equal(CmosRtc.Uf, Reg(c, CmosRtc.RegC));              // 21:05:12: no match
        Set(c, CmosRtc.SecondsAlarm, 0xc0);                          // don't care: every second
        Set(c, CmosRtc.MinutesAlarm, 0xc0);
        Set(c, CmosRtc.HoursAlarm, 0xff);
        now = now.AddSeconds(1);
        Assert.Equal(CmosRtc.Irqf | CmosRtc.Af | CmosRtc.Uf, Reg(c, CmosRtc.RegC));

        Set(c, CmosRtc.RegB, 0x02 | CmosRtc.Pie);
        Set(c, CmosRtc.RegA, 0x2f);                                  // rate 15: 2 Hz
        Assert.Equal(TimeSpan.FromMilliseconds(500), c.Period);
        Assert.InRange(c.NextInterruptIn()!.Value, TimeSpan.Zero, TimeSpan.FromMilliseconds(500));
        now = now.AddMilliseconds(300);                              // xx.4 s: no half-second boundary passed
        Assert.Equal(0, Reg(c, CmosRtc.RegC) & CmosRtc.Pf);
        now = now.AddMilliseconds(300);                              // xx.7 s: xx.5 passed
        Assert.Equal(CmosRtc.Irqf | CmosRtc.Pf, Reg(c, CmosRtc.RegC));
    }

    [Fact]
    public void Pm1_wake_from_the_rtc_sets_wak_sts_and_rtc_sts_only_when_rtc_en_is_set()
    {
        var pm = new AcpiPmRegisters(() => TimeSpan.Zero);
        Assert.False(pm.Wake("rtc"));
        Assert.Equal(0, pm.Status);
        pm.Write(2, 2, AcpiPmRegisters.RtcEn);
        Assert.False(pm.Wake("power-button")); // no other wake source is modelled
        Assert.True(pm.Wake("rtc"));
        Assert.Equal(AcpiPmRegisters.WakSts | AcpiPmRegisters.RtcSts, pm.Status);
    }
}

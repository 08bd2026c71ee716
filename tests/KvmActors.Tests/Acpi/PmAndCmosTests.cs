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
}

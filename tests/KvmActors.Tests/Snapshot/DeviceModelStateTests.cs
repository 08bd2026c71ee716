using KvmActors.Devices.AcpiPm;
using KvmActors.Devices.Cmos;
using KvmActors.Devices.FwCfg;
using KvmActors.Devices.I8042;
using KvmActors.Devices.PcTestdev;
using KvmActors.Devices.PostCode;
using KvmActors.Devices.Uart16550;
using Xunit;

namespace KvmActors.Tests.Snapshot;

/// <summary>
/// Each device's register model driven into a state through its registers, saved, passed through its JSON form
/// (as a state file holds it), restored into a fresh model: every guest-visible read then gives what the
/// original gives, in the same order (reads with effects are made on both, so their effects are compared too).
/// </summary>
public sealed class DeviceModelStateTests
{
    /// <summary>A record through the JSON a state file holds.</summary>
    private static T ThroughJson<T>(T record) => DeviceState.Of("model", 1, record).Read<T>();

    // ---- 16550A ----

    private static Uart16550 BusyUart(List<byte> host)
    {
        var uart = new Uart16550 { HostTransmit = bytes => 0 }; // the host takes nothing: bytes wait in the TX FIFO
        uart.Write(UartReg.Lcr, UartLcr.Dlab);
        uart.Write(UartReg.Dll, 0x30);
        uart.Write(UartReg.Dlm, 0x02);
        uart.Write(UartReg.Lcr, 0x3b); // 8 bits, stick even parity, DLAB off
        uart.Write(UartReg.Fcr, UartFcr.Enable | UartFcr.Trigger4);
        uart.Write(UartReg.Mcr, UartMcr.Loopback | UartMcr.Out2 | UartMcr.Rts);
        foreach (var b in "ABCDE"u8) uart.Write(UartReg.Thr, b);       // loopback: into the RX FIFO
        uart.Write(UartReg.Lcr, 0x3b | UartLcr.Break);                  // a looped break: a zero byte with BI
        uart.Write(UartReg.Lcr, 0x3b);
        uart.Read(UartReg.Rbr);                                         // 'A' read; 'B'.. wait
        uart.Write(UartReg.Mcr, UartMcr.Out2 | UartMcr.Dtr);            // back to the line: MSR deltas
        foreach (var b in "xyz"u8) uart.Write(UartReg.Thr, b);          // to the host, which is full
        uart.Write(UartReg.Scr, 0xa5);
        uart.Write(UartReg.Ier, UartIer.ReceivedData | UartIer.LineStatus | UartIer.ModemStatus | UartIer.ThrEmpty);
        uart.ModemInputs = UartMsr.Cts | UartMsr.Ri;
        uart.HostTransmit = bytes => { host.AddRange(bytes.ToArray()); return bytes.Length; };
        return uart;
    }

    /// <summary>Every register, then the RX FIFO drained with LSR between bytes, then the divisor latch.</summary>
    private static List<ulong> Observe(Uart16550 uart)
    {
        var seen = new List<ulong> { uart.InterruptPending ? 1UL : 0 };
        foreach (var reg in new[] { UartReg.Iir, UartReg.Ier, UartReg.Lcr, UartReg.Mcr, UartReg.Msr, UartReg.Msr, UartReg.Scr, UartReg.Iir })
            seen.Add(uart.Read(reg));
        for (var i = 0; i < 8; i++)
        {
            seen.Add(uart.Read(UartReg.Lsr));
            seen.Add(uart.Read(UartReg.Rbr));
        }
        seen.Add(uart.Read(UartReg.Lsr));
        seen.Add((ulong)uart.TransmitOverruns);
        uart.Write(UartReg.Lcr, 0x3b | UartLcr.Dlab);
        seen.Add(uart.Read(UartReg.Dll));
        seen.Add(uart.Read(UartReg.Dlm));
        return seen;
    }

    [Fact]
    public void Uart_round_trip_keeps_registers_fifos_and_pending_interrupts()
    {
        List<byte> hostA = [], hostB = [];
        var original = BusyUart(hostA);
        var state = ThroughJson(original.Save());
        Assert.Equal("xyz"u8.ToArray(), state.Tx);
        Assert.Equal("BCDE\0"u8.ToArray(), state.Rx);
        Assert.Equal(UartLsr.Break, state.RxErrors[4]);

        var restored = new Uart16550 { HostTransmit = bytes => { hostB.AddRange(bytes.ToArray()); return bytes.Length; } };
        var levels = new List<bool>();
        restored.InterruptChanged += levels.Add;
        restored.Restore(state);
        Assert.True(original.InterruptPending);
        Assert.Equal([true], levels); // the restored IRQ output comes up at the restored registers' level
        Assert.Equal(3, restored.TxCount);
        Assert.Empty(hostB); // not sent by Restore: when the host is ready (Drain)

        Assert.Equal(Observe(original), Observe(restored));
        original.Drain();
        restored.Drain();
        Assert.Equal("xyz"u8.ToArray(), hostB.ToArray());
        Assert.Equal(hostA, hostB);
        Assert.Equal(DeviceState.Of("uart", 1, original.Save()), DeviceState.Of("uart", 1, restored.Save())); // every field, hidden ones too
    }

    [Theory]
    [InlineData("rx")]
    [InlineData("rxErrors")]
    [InlineData("tx")]
    [InlineData("rxTrigger")]
    [InlineData("ier")]
    [InlineData("lineErrors")]
    public void Uart_restore_refuses_an_impossible_state_naming_the_field(string field)
    {
        var s = new Uart16550().Save();
        var bad = field switch
        {
            "rx" => s with { Rx = new byte[2], RxErrors = new byte[2] },   // FIFOs off: the receiver holds one byte
            "rxErrors" => s with { Rx = new byte[1] },
            "tx" => s with { FifoEnabled = true, Tx = new byte[17] },
            "rxTrigger" => s with { RxTrigger = 5 },
            "ier" => s with { Ier = 0x10 },
            _ => s with { LineErrors = UartLsr.DataReady },
        };
        var e = Assert.Throws<DeviceStateException>(() => new Uart16550().Restore(bad));
        Assert.StartsWith($"uart-16550 state: {field}: ", e.Message);
    }

    // ---- fw_cfg ----

    [Fact]
    public void Fw_cfg_round_trip_keeps_the_selector_and_the_offset()
    {
        var items = FwCfgItems.ForMachine(new MachineInfo(2, 64 << 20, []));
        var original = new FwCfgPort(items);
        original.Select(FwCfgItems.RamSize | FwCfgItems.WriteChannel);
        original.Read(3);
        var restored = new FwCfgPort(FwCfgItems.ForMachine(new MachineInfo(2, 64 << 20, [])));
        restored.Restore(ThroughJson(original.Save()));
        Assert.Equal(original.Selector, restored.Selector);
        for (var i = 0; i < 6; i++) Assert.Equal(original.ReadByte(), restored.ReadByte());

        var e = Assert.Throws<DeviceStateException>(() => restored.Restore(new FwCfgPortState(FwCfgItems.NbCpus, 3)));
        Assert.Equal("fw-cfg state: offset: 3 is outside item 0x0005 (2 bytes)", e.Message);
    }

    // ---- i8042 ----

    private static List<ulong> Observe(I8042Controller c)
    {
        var seen = new List<ulong>();
        for (var i = 0; i < 4; i++) { seen.Add(c.ReadStatus()); seen.Add(c.ReadData()); }
        seen.Add((ulong)c.WriteData(0x01)); // the parameter of the waiting command, if any
        seen.Add(c.OutputPort);
        c.WriteCommand(0x20);
        seen.Add(c.ReadData());
        seen.Add(c.ReadStatus());
        return seen;
    }

    [Fact]
    public void I8042_round_trip_keeps_the_command_byte_the_output_queue_and_a_waiting_command()
    {
        var original = new I8042Controller();
        original.WriteCommand(0x60); original.WriteData(0x65);   // command byte
        original.WriteCommand(0xdd);                              // A20 off
        original.WriteCommand(0xaa);                              // 0x55 waits
        original.WriteCommand(0xd3); original.WriteData(0x9e);    // an aux byte waits
        original.WriteCommand(0xd1);                              // waits for its data byte
        var restored = new I8042Controller();
        restored.Restore(ThroughJson(original.Save()));
        Assert.Equal(original.PendingOutput, restored.PendingOutput);
        Assert.Equal(Observe(original), Observe(restored));
    }

    [Fact]
    public void I8042_restore_refuses_an_overfull_buffer_and_a_command_that_takes_no_data()
    {
        var s = new I8042Controller().Save();
        var full = s with { Output = Enumerable.Repeat(new I8042Output(0, false), 17).ToArray() };
        Assert.Equal("i8042 state: output: 17 bytes, more than the buffer holds (16)",
            Assert.Throws<DeviceStateException>(() => new I8042Controller().Restore(full)).Message);
        Assert.StartsWith("i8042 state: pendingCommand: 0xaa",
            Assert.Throws<DeviceStateException>(() => new I8042Controller().Restore(s with { PendingCommand = 0xaa })).Message);
        Assert.StartsWith("i8042 state: ram: ",
            Assert.Throws<DeviceStateException>(() => new I8042Controller().Restore(s with { Ram = new byte[31] })).Message);
    }

    // ---- post-code ----

    [Fact]
    public void Post_code_round_trip_keeps_the_log_and_a_smaller_limit_drops_the_oldest()
    {
        var original = new PostCodeLog(4);
        foreach (var code in new byte[] { 1, 2, 3, 4, 5, 6 }) original.Record(code);
        var state = ThroughJson(original.Save());

        var restored = new PostCodeLog(4);
        restored.Restore(state);
        Assert.Equal(original.Last, restored.Last);
        Assert.Equal(original.Snapshot().Codes, restored.Snapshot().Codes);
        Assert.Equal(2, restored.Snapshot().Dropped);

        var smaller = new PostCodeLog(2);
        smaller.Restore(state);
        Assert.Equal([5, 6], smaller.Snapshot().Codes);
        Assert.Equal(4, smaller.Snapshot().Dropped);
        Assert.Equal(6, smaller.Snapshot().Total);
    }

    // ---- CMOS / RTC ----

    private static byte Reg(CmosRtc c, byte reg) { c.Write(0, reg); return c.Read(1); }

    [Fact]
    public void Cmos_round_trip_keeps_ram_index_nmi_mask_and_the_guest_clock_goes_on_from_host_time()
    {
        var host = new DateTime(2026, 3, 4, 10, 20, 30, DateTimeKind.Utc);
        var original = new CmosRtc(() => host, 2, 32UL << 20, 0);
        original.Write(0, 0x50); original.Write(1, 0xc3);   // a RAM byte
        original.Write(0, CmosRtc.RegB); original.Write(1, 0x06); // binary, 24-hour
        original.Write(0, 4); original.Write(1, 22);        // the guest sets the hour to 22: 12 h ahead of the host
        original.Write(0, 0x80 | 0x50);                      // NMI masked, index 0x50

        var later = host.AddSeconds(95);
        var restored = new CmosRtc(() => later, 2, 32UL << 20, 0);
        restored.Restore(ThroughJson(original.Save()));
        Assert.True(restored.NmiMasked);
        Assert.Equal(0x50, restored.Index);
        Assert.Equal(0xc3, restored.Read(1));               // the index points where it did
        Assert.Equal(22, Reg(restored, 4));
        Assert.Equal(22, Reg(restored, 2));                 // 10:20:30 + 95 s = 10:22:05 on the host, the offset kept
        Assert.Equal(5, Reg(restored, 0));
        for (byte r = 0x0e; r < 0x80; r++)
            if (r != CmosRtc.Century) Assert.Equal(Reg(original, r), Reg(restored, r));

        var s = original.Save();
        Assert.StartsWith("cmos-rtc state: index: ", Assert.Throws<DeviceStateException>(() => restored.Restore(s with { Index = 0x80 })).Message);
        Assert.StartsWith("cmos-rtc state: ram: ", Assert.Throws<DeviceStateException>(() => restored.Restore(s with { Ram = new byte[64] })).Message);
        Assert.StartsWith("cmos-rtc state: clockOffset: ",
            Assert.Throws<DeviceStateException>(() => restored.Restore(s with { ClockOffset = TimeSpan.FromDays(3_000_000) })).Message);
    }

    // ---- ACPI PM ----

    [Fact]
    public void Acpi_pm_round_trip_keeps_pm1_registers_and_the_timer_goes_on_from_where_it_was()
    {
        var clockA = TimeSpan.FromSeconds(2);
        var original = new AcpiPmRegisters(() => clockA);
        original.Write(2, 2, 0x0521);
        original.Write(4, 2, 0x0c00);
        var saved = ThroughJson(original.Save());

        var clockB = TimeSpan.FromMilliseconds(3); // a new process: its clock started later
        var restored = new AcpiPmRegisters(() => clockB);
        restored.Restore(saved);
        foreach (var offset in new ulong[] { 0, 2, 4 }) Assert.Equal(original.Read(offset, 2), restored.Read(offset, 2));
        Assert.Equal(original.Timer, restored.Timer);
        clockB += TimeSpan.FromMilliseconds(1);
        Assert.InRange(restored.Timer - original.Timer, 3579u, 3580u);

        Assert.StartsWith("acpi-pm state: control: ",
            Assert.Throws<DeviceStateException>(() => restored.Restore(saved with { Control = 0 })).Message);
        Assert.StartsWith("acpi-pm state: timerElapsed: ",
            Assert.Throws<DeviceStateException>(() => restored.Restore(saved with { TimerElapsed = TimeSpan.FromSeconds(-1) })).Message);
    }

    // ---- pc-testdev ----

    [Fact]
    public void Pc_testdev_round_trip_keeps_the_data_register_and_the_test_memory()
    {
        var original = new PcTestdevModel();
        Assert.Null(original.Save().Iomem); // all zeros: not written out
        original.WritePort(PcTestdevModel.DataPort, 4, 0xcafef00d);
        original.WritePort(PcTestdevModel.FlushPort, 4, 0x5000);
        original.WriteIomem(0x1234, 8, 0x0102030405060708);
        var restored = new PcTestdevModel();
        restored.Restore(ThroughJson(original.Save()));
        Assert.Equal(original.ReadPort(PcTestdevModel.DataPort, 4), restored.ReadPort(PcTestdevModel.DataPort, 4));
        Assert.Equal(original.ReadPort(PcTestdevModel.DataBytePort + 2, 1), restored.ReadPort(PcTestdevModel.DataBytePort + 2, 1));
        Assert.Equal(0x0102030405060708UL, restored.ReadIomem(0x1234, 8));
        Assert.Equal((1L, 0x5000u), (restored.Flushes, restored.LastFlushAddress));

        restored.Restore(new PcTestdevModel().Save());
        Assert.Equal(0UL, restored.ReadIomem(0x1234, 8)); // a state with no memory clears it
        Assert.StartsWith("pc-testdev state: iomem: ",
            Assert.Throws<DeviceStateException>(() => restored.Restore(new PcTestdevState(0, 0, 0, new byte[10]))).Message);
    }
}

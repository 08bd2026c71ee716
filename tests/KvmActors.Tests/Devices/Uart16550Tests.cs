using System.Text;
using Akka.Actor;
using Akka.Configuration;
using Akka.TestKit;
using Akka.TestKit.Xunit2;
using KvmActors.Devices.Uart16550;
using KvmActors.Runtime.Bus;
using KvmActors.Sdk;
using KvmActors.Runtime.Devices;
using KvmActors.Runtime.Vm;
using KvmActors.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace KvmActors.Tests.Devices;

/// <summary>The register model alone, no actors.</summary>
public sealed class Uart16550ModelTests
{
    private readonly Uart16550 _uart = new();
    private readonly List<byte> _sent = [];
    private readonly List<bool> _irqEvents = [];

    public Uart16550ModelTests()
    {
        _uart.Transmitted += _sent.Add;
        _uart.InterruptChanged += _irqEvents.Add;
    }

    private byte R(int offset) => (byte)_uart.Read(offset);
    private void W(int offset, byte value) => _uart.Write(offset, value);
    private void EnableFifo(byte trigger = UartFcr.Trigger1) => W(UartReg.Fcr, (byte)(UartFcr.Enable | UartFcr.ClearRx | UartFcr.ClearTx | trigger));
    private int IirId() => R(UartReg.Iir) & UartIir.IdMask;

    [Fact]
    public void Reset_values_follow_the_datasheet()
    {
        Assert.Equal(0x00, R(UartReg.Ier));
        Assert.Equal(UartIir.NoInterrupt, R(UartReg.Iir));
        Assert.Equal(0x00, R(UartReg.Lcr));
        Assert.Equal(0x00, R(UartReg.Mcr));
        Assert.Equal(UartLsr.ThrEmpty | UartLsr.TransmitterEmpty, R(UartReg.Lsr));
        Assert.Equal(Uart16550.DefaultModemInputs, R(UartReg.Msr));
        Assert.False(_uart.InterruptPending);
        Assert.Equal(1, _uart.ReceiveSpace);
    }

    [Fact]
    public void Thr_write_transmits_at_once_and_leaves_thre_and_temt_set()
    {
        foreach (var c in "Hi\n"u8.ToArray())
        {
            W(UartReg.Thr, c);
            Assert.Equal(UartLsr.ThrEmpty | UartLsr.TransmitterEmpty, R(UartReg.Lsr) & 0x60);
        }
        Assert.Equal("Hi\n"u8.ToArray(), _sent);
        Assert.Equal(0, _uart.TxCount);
    }

    [Fact]
    public void Data_is_not_masked_by_word_length()
    {
        // LCR is 0 (5-bit words) after reset; a guest that never sets it must still print text.
        W(UartReg.Thr, (byte)'H');
        Assert.Equal((byte)'H', _sent.Single());
    }

    [Fact]
    public void Dlab_maps_offsets_0_and_1_to_the_divisor_latch()
    {
        W(UartReg.Ier, 0x05);
        W(UartReg.Lcr, UartLcr.Dlab | 0x03);
        W(UartReg.Dll, 0x0C);
        W(UartReg.Dlm, 0x34);
        Assert.Equal(0x0C, R(UartReg.Dll));
        Assert.Equal(0x34, R(UartReg.Dlm));
        Assert.Equal(0x340C, _uart.Divisor);
        Assert.Empty(_sent); // the DLL write was not a THR write
        W(UartReg.Lcr, 0x03);
        Assert.Equal(0x03, R(UartReg.Lcr));
        Assert.Equal(0x05, R(UartReg.Ier)); // IER untouched by the DLM write
        W(UartReg.Thr, (byte)'x');
        Assert.Equal((byte)'x', _sent.Single());
        Assert.Equal(0x340C, _uart.Divisor);
    }

    [Fact]
    public void Ier_keeps_four_bits_mcr_five_and_scr_all()
    {
        W(UartReg.Ier, 0xFF);
        Assert.Equal(0x0F, R(UartReg.Ier));
        W(UartReg.Mcr, 0xFF & ~UartMcr.Loopback);
        Assert.Equal(0x0F, R(UartReg.Mcr));
        for (int v = 0; v < 256; v += 17)
        {
            W(UartReg.Scr, (byte)v);
            Assert.Equal(v, R(UartReg.Scr));
        }
    }

    [Fact]
    public void Lsr_and_msr_writes_are_ignored_and_offsets_past_7_read_all_ones()
    {
        W(UartReg.Lsr, 0xFF);
        W(UartReg.Msr, 0x0F);
        Assert.Equal(0x60, R(UartReg.Lsr));
        Assert.Equal(Uart16550.DefaultModemInputs, R(UartReg.Msr));
        Assert.Equal(0xFFUL, _uart.Read(8));
        Assert.Equal(0xFFUL, _uart.Read(-1));
        W(9, 0x55); // ignored, no throw
    }

    [Fact]
    public void Fcr_enables_fifos_sets_trigger_and_shows_in_iir()
    {
        Assert.Equal(UartIir.NoInterrupt, R(UartReg.Iir));
        EnableFifo(UartFcr.Trigger8);
        Assert.True(_uart.FifoEnabled);
        Assert.Equal(8, _uart.RxTriggerLevel);
        Assert.Equal(UartIir.FifosEnabled | UartIir.NoInterrupt, R(UartReg.Iir));
        Assert.Equal(16, _uart.ReceiveSpace);
        foreach (var (bits, level) in new[] { (UartFcr.Trigger1, 1), (UartFcr.Trigger4, 4), (UartFcr.Trigger8, 8), (UartFcr.Trigger14, 14) })
        {
            W(UartReg.Fcr, (byte)(UartFcr.Enable | bits));
            Assert.Equal(level, _uart.RxTriggerLevel);
        }
        W(UartReg.Fcr, 0);
        Assert.False(_uart.FifoEnabled);
        Assert.Equal(UartIir.NoInterrupt, R(UartReg.Iir));
        Assert.Equal(1, _uart.ReceiveSpace);
    }

    [Fact]
    public void Fcr_bits_other_than_enable_are_not_programmed_while_fifos_are_off()
    {
        W(UartReg.Fcr, UartFcr.Trigger14); // bit 0 clear
        Assert.False(_uart.FifoEnabled);
        W(UartReg.Fcr, UartFcr.Enable);
        Assert.Equal(1, _uart.RxTriggerLevel);
    }

    [Fact]
    public void Fcr_clear_rx_and_mode_changes_empty_the_fifo()
    {
        EnableFifo();
        Assert.Equal(5, _uart.Receive("hello"u8));
        W(UartReg.Fcr, UartFcr.Enable | UartFcr.ClearTx); // TX clear leaves RX alone
        Assert.Equal(5, _uart.RxCount);
        W(UartReg.Fcr, UartFcr.Enable | UartFcr.ClearRx);
        Assert.Equal(0, _uart.RxCount);
        Assert.Equal(0, R(UartReg.Lsr) & UartLsr.DataReady);

        _uart.Receive("abc"u8);
        W(UartReg.Fcr, 0); // leaving FIFO mode empties the FIFOs
        Assert.Equal(0, _uart.RxCount);
        _uart.Receive("z"u8);
        W(UartReg.Fcr, UartFcr.Enable); // entering it does too
        Assert.Equal(0, _uart.RxCount);
    }

    [Fact]
    public void Receive_without_fifo_takes_one_byte_and_keeps_back_the_rest()
    {
        Assert.Equal(1, _uart.Receive("ab"u8));
        Assert.Equal(0, _uart.ReceiveSpace);
        Assert.Equal(0, _uart.Receive("b"u8));
        Assert.Equal(UartLsr.DataReady, R(UartReg.Lsr) & (UartLsr.DataReady | UartLsr.Overrun));
        Assert.Equal((byte)'a', R(UartReg.Rbr));
        Assert.Equal(0, R(UartReg.Lsr) & UartLsr.DataReady);
        Assert.Equal((byte)'a', R(UartReg.Rbr)); // empty: RBR keeps the last byte
        Assert.Equal(1, _uart.Receive("b"u8));
        Assert.Equal((byte)'b', R(UartReg.Rbr));
    }

    [Fact]
    public void Receive_with_fifo_takes_sixteen_bytes_in_order_without_overrun()
    {
        EnableFifo();
        var data = Enumerable.Range(0, 20).Select(i => (byte)('A' + i)).ToArray();
        Assert.Equal(16, _uart.Receive(data));
        Assert.Equal(0, _uart.ReceiveSpace);
        Assert.Equal(0, _uart.Receive(data.AsSpan(16)));
        Assert.Equal(0, R(UartReg.Lsr) & UartLsr.Overrun);
        for (int i = 0; i < 16; i++) Assert.Equal(data[i], R(UartReg.Rbr));
        Assert.Equal(4, _uart.Receive(data.AsSpan(16)));
        for (int i = 16; i < 20; i++) Assert.Equal(data[i], R(UartReg.Rbr));
        Assert.Equal(0, R(UartReg.Lsr) & UartLsr.DataReady);
    }

    [Fact]
    public void Received_data_interrupt_without_fifo()
    {
        W(UartReg.Ier, UartIer.ReceivedData);
        Assert.Equal(UartIir.NoInterrupt, R(UartReg.Iir));
        _uart.Receive("x"u8);
        Assert.Equal(UartIir.ReceivedData, R(UartReg.Iir));
        R(UartReg.Rbr);
        Assert.Equal(UartIir.NoInterrupt, R(UartReg.Iir));
    }

    [Fact]
    public void Fifo_trigger_level_gives_data_available_and_below_it_a_character_timeout()
    {
        EnableFifo(UartFcr.Trigger4);
        W(UartReg.Ier, UartIer.ReceivedData);
        _uart.Receive("abc"u8);
        Assert.Equal(UartIir.CharacterTimeout, IirId()); // the line is idle after the burst
        _uart.Receive("d"u8);
        Assert.Equal(UartIir.ReceivedData, IirId());
        R(UartReg.Rbr);
        Assert.Equal(UartIir.CharacterTimeout, IirId());
        R(UartReg.Rbr); R(UartReg.Rbr); R(UartReg.Rbr);
        Assert.Equal(UartIir.NoInterrupt, IirId());
    }

    [Fact]
    public void Thre_interrupt_on_enable_cleared_by_iir_read_and_raised_again_by_thr_write()
    {
        W(UartReg.Ier, UartIer.ThrEmpty);
        Assert.Equal(UartIir.ThrEmpty, R(UartReg.Iir));
        Assert.Equal(UartIir.NoInterrupt, R(UartReg.Iir)); // the read cleared it
        W(UartReg.Thr, (byte)'a');
        Assert.Equal(UartIir.ThrEmpty, R(UartReg.Iir));
        // Disabling and re-enabling ETBEI re-raises it (Linux checks this).
        W(UartReg.Ier, 0);
        W(UartReg.Ier, UartIer.ThrEmpty);
        Assert.Equal(UartIir.ThrEmpty, R(UartReg.Iir));
        // Writing IER again with ETBEI still set is no new edge.
        W(UartReg.Ier, UartIer.ThrEmpty);
        Assert.Equal(UartIir.NoInterrupt, R(UartReg.Iir));
    }

    [Fact]
    public void Thre_interrupt_is_not_cleared_by_an_iir_read_that_reports_something_higher()
    {
        W(UartReg.Ier, UartIer.ThrEmpty | UartIer.ReceivedData);
        _uart.Receive("x"u8);
        Assert.Equal(UartIir.ReceivedData, R(UartReg.Iir));
        R(UartReg.Rbr);
        Assert.Equal(UartIir.ThrEmpty, R(UartReg.Iir));
        Assert.Equal(UartIir.NoInterrupt, R(UartReg.Iir));
    }

    [Fact]
    public void Interrupt_priorities_line_status_then_data_then_thre_then_modem()
    {
        EnableFifo();
        W(UartReg.Mcr, UartMcr.Loopback);
        R(UartReg.Msr);                                        // clear the deltas of entering loopback
        for (int i = 0; i < 17; i++) W(UartReg.Thr, (byte)i); // 17th byte overruns the FIFO
        W(UartReg.Mcr, UartMcr.Loopback | UartMcr.Rts);        // CTS changes: modem status
        W(UartReg.Ier, 0x0F);                                  // ETBEI edge: THRE pending too

        Assert.Equal(UartIir.LineStatus, IirId());
        Assert.Equal(UartLsr.Overrun, R(UartReg.Lsr) & UartLsr.Errors);
        Assert.Equal(UartIir.ReceivedData, IirId());
        for (int i = 0; i < 16; i++) Assert.Equal(i, R(UartReg.Rbr));
        Assert.Equal(UartIir.ThrEmpty, IirId()); // this read clears THRE
        Assert.Equal(UartIir.ModemStatus, IirId());
        Assert.Equal(UartMsr.Cts | UartMsr.DeltaCts, R(UartReg.Msr));
        Assert.Equal(UartIir.NoInterrupt, IirId());
    }

    [Fact]
    public void Disabled_sources_do_not_interrupt()
    {
        EnableFifo();
        W(UartReg.Mcr, UartMcr.Loopback);
        for (int i = 0; i < 17; i++) W(UartReg.Thr, (byte)i);
        W(UartReg.Mcr, UartMcr.Loopback | UartMcr.Dtr);
        W(UartReg.Ier, 0);
        Assert.Equal(UartIir.NoInterrupt, IirId());
        W(UartReg.Ier, UartIer.ModemStatus);
        Assert.Equal(UartIir.ModemStatus, IirId());
    }

    [Fact]
    public void Overrun_in_16450_mode_overwrites_rbr_and_clears_on_lsr_read()
    {
        W(UartReg.Mcr, UartMcr.Loopback);
        W(UartReg.Thr, 1);
        W(UartReg.Thr, 2);
        Assert.Equal(UartLsr.DataReady | UartLsr.Overrun | 0x60, R(UartReg.Lsr));
        Assert.Equal(0x60 | UartLsr.DataReady, R(UartReg.Lsr)); // OE cleared by the read
        Assert.Equal(2, R(UartReg.Rbr));
        Assert.Empty(_sent);
    }

    [Fact]
    public void Loopback_sends_tx_to_rx_holds_host_input_and_mirrors_mcr_in_msr()
    {
        W(UartReg.Mcr, UartMcr.Loopback | UartMcr.Out2 | UartMcr.Rts); // as Linux probes it
        Assert.Equal(UartMsr.Dcd | UartMsr.Cts, R(UartReg.Msr) & UartMsr.Inputs);
        W(UartReg.Mcr, UartMcr.Loopback | UartMcr.Dtr | UartMcr.Out1);
        Assert.Equal(UartMsr.Dsr | UartMsr.Ri, R(UartReg.Msr) & UartMsr.Inputs);

        EnableFifo();
        Assert.Equal(0, _uart.ReceiveSpace);
        Assert.Equal(0, _uart.Receive("host"u8)); // receiver disconnected: host input waits
        W(UartReg.Thr, (byte)'L');
        Assert.Empty(_sent);
        Assert.Equal(UartLsr.DataReady, R(UartReg.Lsr) & UartLsr.DataReady);
        Assert.Equal((byte)'L', R(UartReg.Rbr));

        W(UartReg.Mcr, 0);
        Assert.Equal(16, _uart.ReceiveSpace);
        W(UartReg.Thr, (byte)'T');
        Assert.Equal((byte)'T', _sent.Single());
        Assert.Equal(Uart16550.DefaultModemInputs, R(UartReg.Msr) & UartMsr.Inputs);
    }

    [Fact]
    public void Msr_deltas_follow_line_changes_and_clear_on_read()
    {
        R(UartReg.Msr);
        _uart.ModemInputs = UartMsr.Dsr | UartMsr.Ri; // CTS and DCD drop, RI rises
        Assert.Equal(UartMsr.Dsr | UartMsr.Ri | UartMsr.DeltaCts | UartMsr.DeltaDcd, R(UartReg.Msr));
        Assert.Equal(UartMsr.Dsr | UartMsr.Ri, R(UartReg.Msr));
        _uart.ModemInputs = UartMsr.Dsr; // RI trailing edge
        Assert.Equal(UartMsr.Dsr | UartMsr.TrailingEdgeRi, R(UartReg.Msr));
    }

    [Fact]
    public void Loopback_break_loads_a_zero_byte_with_bi_and_fifo_error()
    {
        EnableFifo();
        W(UartReg.Mcr, UartMcr.Loopback);
        W(UartReg.Thr, (byte)'a');
        W(UartReg.Lcr, 0x03 | UartLcr.Break);
        W(UartReg.Lcr, 0x03 | UartLcr.Break); // still the same break: no second byte
        Assert.Equal(2, _uart.RxCount);
        byte lsr = R(UartReg.Lsr);
        Assert.Equal(UartLsr.RxFifoError, lsr & UartLsr.RxFifoError);
        Assert.Equal(0, lsr & UartLsr.Break); // not at the top of the FIFO yet
        Assert.Equal((byte)'a', R(UartReg.Rbr));
        lsr = R(UartReg.Lsr);
        Assert.Equal(UartLsr.Break | UartLsr.RxFifoError, lsr & (UartLsr.Break | UartLsr.RxFifoError));
        Assert.Equal(0, R(UartReg.Lsr) & UartLsr.Break);       // BI clears on read
        Assert.Equal(UartLsr.RxFifoError, R(UartReg.Lsr) & UartLsr.RxFifoError); // the byte is still there
        Assert.Equal(0, R(UartReg.Rbr));
        R(UartReg.Lsr);
        Assert.Equal(0, R(UartReg.Lsr) & (UartLsr.RxFifoError | UartLsr.DataReady));
    }

    [Fact]
    public void Line_status_interrupt_on_break()
    {
        W(UartReg.Ier, UartIer.LineStatus);
        W(UartReg.Mcr, UartMcr.Loopback);
        W(UartReg.Lcr, UartLcr.Break);
        Assert.Equal(UartIir.LineStatus, IirId());
        R(UartReg.Lsr);
        Assert.Equal(UartIir.NoInterrupt, IirId());
    }

    [Fact]
    public void Irq_line_needs_out2_and_is_masked_in_loopback()
    {
        W(UartReg.Ier, UartIer.ReceivedData);
        _uart.Receive("x"u8);
        Assert.True(_uart.ChipInterrupt);
        Assert.False(_uart.InterruptPending);
        Assert.Empty(_irqEvents);

        W(UartReg.Mcr, UartMcr.Out2);
        Assert.True(_uart.InterruptPending);
        W(UartReg.Mcr, UartMcr.Out2 | UartMcr.Loopback); // OUT2 pin is forced inactive
        Assert.False(_uart.InterruptPending);
        W(UartReg.Mcr, UartMcr.Out2);
        R(UartReg.Rbr);
        Assert.False(_uart.InterruptPending);
        Assert.Equal(new[] { true, false, true, false }, _irqEvents);
    }

    [Fact]
    public void Thr_write_in_an_interrupt_driven_transmit_keeps_the_line_consistent()
    {
        W(UartReg.Mcr, UartMcr.Out2);
        W(UartReg.Ier, UartIer.ThrEmpty);
        Assert.Equal(new[] { true }, _irqEvents);
        Assert.Equal(UartIir.ThrEmpty, IirId()); // the ISR reads IIR: line drops
        W(UartReg.Thr, (byte)'a');                // the THR empties again: new edge
        Assert.Equal(new[] { true, false, true }, _irqEvents);
        W(UartReg.Ier, 0);
        Assert.Equal(new[] { true, false, true, false }, _irqEvents);
    }

    [Fact]
    public void Reset_restores_reset_values_and_keeps_scratch()
    {
        W(UartReg.Scr, 0x5A);
        EnableFifo();
        W(UartReg.Ier, 0x0F);
        W(UartReg.Mcr, UartMcr.Out2 | UartMcr.Loopback);
        W(UartReg.Thr, 1);
        _uart.Reset();
        Assert.Equal(0, R(UartReg.Ier));
        Assert.Equal(UartIir.NoInterrupt, R(UartReg.Iir));
        Assert.Equal(0x60, R(UartReg.Lsr));
        Assert.Equal(0, R(UartReg.Mcr));
        Assert.Equal(0x5A, R(UartReg.Scr));
        Assert.Equal(0, _uart.RxCount);
    }
}

/// <summary>The device actor: port messages, sinks, IRQ messages and host input.</summary>
public sealed class Uart16550DeviceTests : TestKit
{
    private const ushort Base = 0x3f8;
    private long _seq;

    public Uart16550DeviceTests(ITestOutputHelper output) : base((ActorSystem?)null, output) { }

    private (IActorRef Uart, TestProbe Vm) Start(string options, IReadOnlyList<int>? irqs = null)
    {
        var vm = CreateTestProbe();
        var context = new DeviceContext
        {
            Name = "com1",
            Type = "uart-16550",
            Options = new DeviceOptions(ConfigurationFactory.ParseString(options), "guest.devices.com1.options", "test.conf", Path.GetTempPath()),
            Irqs = irqs ?? [],
            Vm = vm.Ref,
            Machine = new MachineInfo(1, 1 << 20, []),
        };
        var uart = Sys.ActorOf(DeviceRegistry.PropsFor(typeof(Uart16550Device), context));
        return (uart, vm);
    }

    private ulong Read(IActorRef uart, int offset, int size = 1)
    {
        long seq = ++_seq;
        uart.Tell(new PortRead((ushort)(Base + offset), (ushort)offset, size, 0, seq), TestActor);
        return ExpectMsg<ReadCompleted>(m => m.Seq == seq).Value;
    }

    private static void Write(IActorRef uart, int offset, uint value, int size = 1) =>
        uart.Tell(new PortWrite((ushort)(Base + offset), (ushort)offset, size, value, 0));

    private static void WriteText(IActorRef uart, string text)
    {
        foreach (var c in text) Write(uart, UartReg.Thr, c);
    }

    /// <summary>Reads <paramref name="count"/> bytes the interrupt-driven way: wait for the IRQ, drain while DR.</summary>
    private byte[] ReadByInterrupt(IActorRef uart, TestProbe vm, int count, int line = 4)
    {
        var got = new List<byte>();
        while (got.Count < count)
        {
            vm.FishForMessage<SetIrqLine>(m => m.Line == line && m.Level, TimeSpan.FromSeconds(5));
            while ((Read(uart, UartReg.Lsr) & UartLsr.DataReady) != 0) got.Add((byte)Read(uart, UartReg.Rbr));
        }
        return got.ToArray();
    }

    [Fact]
    public void Registry_finds_the_device_by_its_type_name()
    {
        var registry = new DeviceRegistry(BuiltInDevices.Assemblies, []);
        Assert.Equal(typeof(Uart16550Device), registry.Resolve("uart-16550"));
    }

    [Fact]
    public void Polled_console_output_reaches_the_sink_and_lsr_reads_thre_temt()
    {
        var (uart, _) = Start("sink = \"memory:out\"");
        Assert.Equal(0x60UL, Read(uart, UartReg.Lsr) & 0x60);
        WriteText(uart, "Hello, 16550!\n");
        Assert.Equal(0x60UL, Read(uart, UartReg.Lsr) & 0x60);
        // The read was answered after the writes (one mailbox), so the text is complete.
        Assert.Equal("Hello, 16550!\n", HostIo.For(Sys).Memory("out").Text);
    }

    [Fact]
    public void Wider_accesses_act_on_the_first_byte_and_offsets_past_7_are_open_bus()
    {
        var (uart, _) = Start("sink = \"memory:wide\"");
        Write(uart, UartReg.Thr, 0x12345641, size: 4);
        Assert.Equal(0x60UL, Read(uart, UartReg.Lsr, size: 2));
        Assert.Equal(0x60UL, Read(uart, UartReg.Lsr, size: 4));
        Assert.Equal(0xFFFFUL, Read(uart, 8, size: 2));
        Assert.Equal("A", HostIo.For(Sys).Memory("wide").Text);
    }

    [Theory]
    [InlineData("sink = null")]
    [InlineData("sink = \"null\"\ninput = null")]
    public void Null_sink_and_input_mean_none(string options)
    {
        var (uart, _) = Start(options);
        Write(uart, UartReg.Thr, 'x');
        Assert.Equal(0x60UL, Read(uart, UartReg.Lsr) & 0x60);
    }

    [Fact]
    public void Registers_read_back_through_the_actor()
    {
        var (uart, _) = Start("sink = none");
        Write(uart, UartReg.Scr, 0xA5);
        Write(uart, UartReg.Lcr, 0x83);
        Write(uart, UartReg.Dll, 0x01);
        Write(uart, UartReg.Dlm, 0x00);
        Assert.Equal(0x01UL, Read(uart, UartReg.Dll));
        Write(uart, UartReg.Lcr, 0x03);
        Write(uart, UartReg.Fcr, 0xC7);
        Assert.Equal(0xA5UL, Read(uart, UartReg.Scr));
        Assert.Equal(0x03UL, Read(uart, UartReg.Lcr));
        Assert.Equal(0xC1UL, Read(uart, UartReg.Iir));
    }

    [Fact]
    public void Thre_interrupt_drives_the_irq_line_through_the_vm()
    {
        var (uart, vm) = Start("sink = none");
        Write(uart, UartReg.Mcr, UartMcr.Out2 | UartMcr.Dtr | UartMcr.Rts);
        Write(uart, UartReg.Ier, UartIer.ThrEmpty);
        Assert.Equal(new SetIrqLine(4, true, "com1"), vm.ExpectMsg<SetIrqLine>());
        Assert.Equal(UartIir.ThrEmpty, (int)Read(uart, UartReg.Iir));
        Assert.Equal(new SetIrqLine(4, false, "com1"), vm.ExpectMsg<SetIrqLine>());
        vm.ExpectNoMsg(TimeSpan.FromMilliseconds(100));
    }

    [Fact]
    public void Irq_option_and_configured_irqs_choose_the_line()
    {
        var (a, vmA) = Start("irq = 3\nsink = none");
        Write(a, UartReg.Mcr, UartMcr.Out2);
        Write(a, UartReg.Ier, UartIer.ThrEmpty);
        Assert.Equal(3, vmA.ExpectMsg<SetIrqLine>().Line);

        var (b, vmB) = Start("sink = none", irqs: [5]);
        Write(b, UartReg.Mcr, UartMcr.Out2);
        Write(b, UartReg.Ier, UartIer.ThrEmpty);
        Assert.Equal(5, vmB.ExpectMsg<SetIrqLine>().Line);
    }

    [Theory]
    [InlineData("colour = red")]
    [InlineData("sink = \"bogus:x\"")]
    [InlineData("input = \"tape\"")]
    [InlineData("irq = -1")]
    public void Bad_options_stop_the_device_at_creation(string options)
    {
        var (uart, _) = Start(options);
        Watch(uart);
        ExpectTerminated(uart);
    }

    [Fact]
    public void Host_input_reaches_rbr()
    {
        var (uart, vm) = Start("sink = none\ninput = \"memory:in\"");
        Write(uart, UartReg.Mcr, UartMcr.Out2);
        Write(uart, UartReg.Ier, UartIer.ReceivedData);
        HostIo.For(Sys).MemoryInput("in").Push("ok");
        Assert.Equal("ok", Encoding.Latin1.GetString(ReadByInterrupt(uart, vm, 2)));
    }

    [Fact]
    public void Host_input_is_seen_by_polling_lsr()
    {
        var (uart, _) = Start("sink = none\ninput = \"memory:poll\"");
        HostIo.For(Sys).MemoryInput("poll").Push("z");
        AwaitAssert(() => Assert.Equal((ulong)UartLsr.DataReady, Read(uart, UartReg.Lsr) & UartLsr.DataReady),
            TimeSpan.FromSeconds(5), TimeSpan.FromMilliseconds(10));
        Assert.Equal((ulong)'z', Read(uart, UartReg.Rbr));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Many_host_bytes_arrive_in_order_with_none_lost(bool fifo)
    {
        var (uart, vm) = Start("sink = none\ninput = \"memory:bulk\"");
        if (fifo) Write(uart, UartReg.Fcr, UartFcr.Enable | UartFcr.ClearRx | UartFcr.ClearTx | UartFcr.Trigger8);
        Write(uart, UartReg.Mcr, UartMcr.Out2);
        Write(uart, UartReg.Ier, UartIer.ReceivedData | UartIer.LineStatus);
        var data = Enumerable.Range(0, 200).Select(i => (byte)(i * 7)).ToArray();
        var input = HostIo.For(Sys).MemoryInput("bulk");
        input.Push(data.AsSpan(0, 37));
        input.Push(data.AsSpan(37));
        Assert.Equal(data, ReadByInterrupt(uart, vm, data.Length));
        Assert.Equal(0UL, Read(uart, UartReg.Lsr) & UartLsr.Overrun);
        Assert.Equal(0, input.Pending);
    }

    [Fact]
    public void Host_input_waits_during_loopback_and_is_delivered_after_it()
    {
        var (uart, _) = Start("sink = \"memory:lb\"\ninput = \"memory:lbin\"");
        Write(uart, UartReg.Mcr, UartMcr.Loopback);
        Write(uart, UartReg.Thr, 'L');
        Assert.Equal((ulong)'L', Read(uart, UartReg.Rbr));
        HostIo.For(Sys).MemoryInput("lbin").Push("host");
        // The receiver is disconnected in loopback: host bytes must not show up, nor be lost.
        Assert.Equal(0UL, Read(uart, UartReg.Lsr) & UartLsr.DataReady);
        Write(uart, UartReg.Fcr, UartFcr.Enable); // before leaving loopback: enabling FIFOs empties them
        Write(uart, UartReg.Mcr, 0);
        var got = new List<byte>();
        AwaitAssert(() =>
        {
            while ((Read(uart, UartReg.Lsr) & UartLsr.DataReady) != 0) got.Add((byte)Read(uart, UartReg.Rbr));
            Assert.Equal("host", Encoding.Latin1.GetString(got.ToArray()));
        }, TimeSpan.FromSeconds(5), TimeSpan.FromMilliseconds(10));
        Assert.Equal("", HostIo.For(Sys).Memory("lb").Text);
    }

    [Fact]
    public void Stopping_the_device_leaves_unread_input_in_the_source()
    {
        var (uart, _) = Start("sink = none\ninput = \"memory:stop\"");
        var input = HostIo.For(Sys).MemoryInput("stop");
        input.Push("a");
        AwaitAssert(() => Assert.Equal((ulong)UartLsr.DataReady, Read(uart, UartReg.Lsr) & UartLsr.DataReady),
            TimeSpan.FromSeconds(5), TimeSpan.FromMilliseconds(10));
        Watch(uart);
        Sys.Stop(uart);
        ExpectTerminated(uart);
        input.Push("later");
        Assert.Equal(5, input.Pending);
    }

    [Fact]
    public void Reader_answers_only_what_was_asked_and_only_when_it_has_bytes()
    {
        var input = HostIo.For(Sys).MemoryInput("reader");
        var reader = Sys.ActorOf(HostInputReader.Props(input));
        reader.Tell(new RequestHostInput(4));
        ExpectNoMsg(TimeSpan.FromMilliseconds(100));
        input.Push("0123456789");
        Assert.Equal("0123"u8.ToArray(), ExpectMsg<HostInputReceived>().Bytes.ToArray());
        Assert.Equal(6, input.Pending); // nothing read ahead of demand
        reader.Tell(new RequestHostInput(100));
        Assert.Equal("456789"u8.ToArray(), ExpectMsg<HostInputReceived>().Bytes.ToArray());
        input.Complete();
        reader.Tell(new RequestHostInput(1));
        ExpectMsg<HostInputEnded>();
        reader.Tell(new RequestHostInput(1));
        ExpectMsg<HostInputEnded>();
    }

    [Fact]
    public void Completed_input_delivers_its_remaining_bytes_then_ends()
    {
        var input = HostIo.For(Sys).MemoryInput("done");
        input.Push("xy");
        input.Complete();
        Assert.Throws<InvalidOperationException>(() => input.Push("z"));
        var reader = Sys.ActorOf(HostInputReader.Props(input));
        reader.Tell(new RequestHostInput(16));
        Assert.Equal("xy"u8.ToArray(), ExpectMsg<HostInputReceived>().Bytes.ToArray());
        reader.Tell(new RequestHostInput(16));
        ExpectMsg<HostInputEnded>();
    }
}

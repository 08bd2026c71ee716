using KvmActors.Devices.Uart16550;
using Xunit;

namespace KvmActors.Tests.Devices;

/// <summary>The transmitter at the host's pace: a host that takes nothing keeps THR busy; room again drains it.</summary>
public sealed class Uart16550BackPressureTests
{
    private readonly Uart16550 _uart = new();
    private readonly List<byte> _host = [];
    private int _room;   // how many more bytes the host takes

    public Uart16550BackPressureTests()
    {
        _uart.HostTransmit = bytes =>
        {
            int n = Math.Min(_room, bytes.Length);
            _host.AddRange(bytes[..n].ToArray());
            _room -= n;
            return n;
        };
    }

    private byte Lsr() => (byte)_uart.Read(UartReg.Lsr);
    private const byte Thre = UartLsr.ThrEmpty, Temt = UartLsr.TransmitterEmpty;

    [Fact]
    public void Thr_stays_busy_while_the_host_is_full_and_empties_when_it_drains()
    {
        Assert.Equal(Thre | Temt, Lsr() & (Thre | Temt));
        _uart.Write(UartReg.Thr, (byte)'a');
        Assert.Equal(0, Lsr() & (Thre | Temt)); // THRE and TEMT clear: the byte waits
        Assert.Equal(1, _uart.TxCount);
        _uart.Write(UartReg.Thr, (byte)'b'); // a write while THR is full is lost, as on the chip
        Assert.Equal(1, _uart.TransmitOverruns);

        Assert.False(_uart.Drain()); // still no room
        Assert.Equal(0, Lsr() & (Thre | Temt));

        _room = 10;
        Assert.True(_uart.Drain());
        Assert.Equal(Thre | Temt, Lsr() & (Thre | Temt));
        Assert.Equal("a"u8.ToArray(), _host.ToArray());
    }

    [Fact]
    public void With_fifos_sixteen_bytes_wait_and_a_partial_take_leaves_the_rest_in_order()
    {
        _uart.Write(UartReg.Fcr, UartFcr.Enable);
        for (int i = 0; i < 17; i++) _uart.Write(UartReg.Thr, (byte)('A' + i));
        Assert.Equal(16, _uart.TxCount);
        Assert.Equal(1, _uart.TransmitOverruns); // the 17th did not fit

        _room = 5;
        Assert.False(_uart.Drain());
        Assert.Equal(11, _uart.TxCount);
        Assert.Equal(0, Lsr() & (Thre | Temt));

        _room = 100;
        Assert.True(_uart.Drain());
        Assert.Equal("ABCDEFGHIJKLMNOP", System.Text.Encoding.ASCII.GetString(_host.ToArray()));
        Assert.Equal(Thre | Temt, Lsr() & (Thre | Temt));
    }

    [Fact]
    public void Thr_emptying_after_a_drain_raises_the_thre_interrupt_when_etbei()
    {
        _uart.Write(UartReg.Mcr, UartMcr.Out2);
        _uart.Write(UartReg.Ier, UartIer.ThrEmpty);
        Assert.Equal(UartIir.ThrEmpty, _uart.Read(UartReg.Iir) & UartIir.IdMask); // enabling ETBEI with THR empty; the read clears it
        Assert.False(_uart.InterruptPending);

        _uart.Write(UartReg.Thr, (byte)'x');
        Assert.False(_uart.InterruptPending); // THR is full: no THRE interrupt
        Assert.Equal(UartIir.NoInterrupt, _uart.PeekIir() & UartIir.IdMask);

        var levels = new List<bool>();
        _uart.InterruptChanged += levels.Add;
        _room = 1;
        _uart.Drain();
        Assert.True(_uart.InterruptPending);
        Assert.Equal([true], levels);
        Assert.Equal(UartIir.ThrEmpty, _uart.Read(UartReg.Iir) & UartIir.IdMask);
        Assert.False(_uart.InterruptPending);
    }

    [Fact]
    public void Clearing_the_tx_fifo_empties_thr_and_loopback_ignores_the_host()
    {
        _uart.Write(UartReg.Fcr, UartFcr.Enable);
        _uart.Write(UartReg.Thr, 1);
        _uart.Write(UartReg.Thr, 2);
        _uart.Write(UartReg.Fcr, UartFcr.Enable | UartFcr.ClearTx);
        Assert.Equal(0, _uart.TxCount);
        Assert.Equal(Thre | Temt, Lsr() & (Thre | Temt));

        _uart.Write(UartReg.Mcr, UartMcr.Loopback);
        _uart.Write(UartReg.Thr, 0x55); // loopback: to the receiver at once, whatever the host
        Assert.Equal(Thre | Temt, Lsr() & (Thre | Temt));
        Assert.Equal(0x55UL, _uart.Read(UartReg.Rbr));
        Assert.Empty(_host);
    }
}

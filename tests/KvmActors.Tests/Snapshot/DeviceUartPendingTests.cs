using Akka.Actor;
using KvmActors.Devices.Uart16550;
using Xunit;
using Xunit.Abstractions;
using static KvmActors.Tests.Snapshot.Access;

namespace KvmActors.Tests.Snapshot;

/// <summary>A sink that takes only as many bytes as the test lets it, and says when it has room again.</summary>
public sealed class GatedOutput : IGuestOutput
{
    private readonly object _gate = new();
    private readonly List<byte> _taken = [];
    private int _room;
    private (IActorRef Target, object Message)? _waiting;

    public byte[] Taken { get { lock (_gate) return _taken.ToArray(); } }

    public int TryWrite(ReadOnlySpan<byte> bytes)
    {
        lock (_gate)
        {
            var n = Math.Min(_room, bytes.Length);
            _taken.AddRange(bytes[..n]);
            _room -= n;
            return n;
        }
    }

    public void NotifyWhenWritable(IActorRef target, object message)
    {
        lock (_gate)
        {
            if (_room > 0) { target.Tell(message); return; }
            _waiting = (target, message);
        }
    }

    public void Open(int room)
    {
        (IActorRef Target, object Message)? wake;
        lock (_gate)
        {
            _room += room;
            wake = _waiting;
            _waiting = null;
        }
        wake?.Target.Tell(wake.Value.Message);
    }
}

/// <summary>The UART's pending bytes in a snapshot: output the sink had not taken, input the guest had not read.</summary>
public sealed class DeviceUartPendingTests(ITestOutputHelper output) : DeviceStateKit(output)
{
    private static readonly PortRange Com1 = new(0x3f8, 0x3ff);

    private (IActorRef Uart, DeviceContext Context, GatedOutput Sink) Uart(string name, int room = 0)
    {
        var sink = new GatedOutput();
        sink.Open(room);
        var attached = $"{name}-{Guid.NewGuid():N}";
        HostIo.For(Sys).Attached.Attach(attached, sink, null);
        var context = Context(name, "uart-16550", $"sink = \"attached:{attached}\"", [Com1]);
        return (Create(context), context, sink);
    }

    private byte Lsr(IActorRef uart, DeviceContext context) => (byte)Run(uart, context, [In(0x3fd)])[0];

    [Fact]
    public void Bytes_waiting_for_a_full_sink_are_in_the_state_and_the_restored_uart_sends_them_as_its_sink_takes_them()
    {
        var (original, ctx, _) = Uart("com1");
        Run(original, ctx, [Out(0x3fa, 0x01), .. "hello".Select(c => Out(0x3f8, c))]); // FIFOs on; the sink takes nothing
        Assert.Equal(0, Lsr(original, ctx) & UartLsr.ThrEmpty);

        var state = Save(original, "com1")!;
        Assert.Equal("hello"u8.ToArray(), state.Read<Uart16550Device.UartSaved>().Uart.Tx);

        var (restored, restoredCtx, sink) = Uart("com1", room: 2);
        Assert.Null(Restore(restored, state));
        Assert.Equal("he"u8.ToArray(), sink.Taken);          // as far as the sink took them, at once
        Assert.Equal(0, Lsr(restored, restoredCtx) & UartLsr.ThrEmpty); // the rest still waits: THR busy

        sink.Open(100);
        AwaitAssert(() => Assert.Equal("hello"u8.ToArray(), sink.Taken), TimeSpan.FromSeconds(5));
        Assert.Equal(UartLsr.ThrEmpty | UartLsr.TransmitterEmpty, Lsr(restored, restoredCtx) & (UartLsr.ThrEmpty | UartLsr.TransmitterEmpty));
    }

    [Fact]
    public void Received_bytes_the_guest_had_not_read_are_read_from_the_restored_uart_in_order()
    {
        var (original, ctx, _) = Uart("com1");
        // Loopback fills the RX FIFO with what the guest sends; then the line goes back to the host.
        Run(original, ctx, [Out(0x3fa, 0x01), Out(0x3fc, 0x10), .. "xyz".Select(c => Out(0x3f8, c)), Out(0x3fc, 0x00)]);
        var (restored, restoredCtx, _) = Uart("com2");
        Assert.Null(Restore(restored, Save(original, "com1")!));

        Access[] drain = [In(0x3fd), In(0x3f8), In(0x3f8), In(0x3f8), In(0x3fd)];
        var values = Run(restored, restoredCtx, drain);
        Assert.Equal(Run(original, ctx, drain), values);
        Assert.Equal([(ulong)'x', 'y', 'z'], values[1..4]);
        Assert.Equal(0, (int)values[4] & UartLsr.DataReady);
    }
}

using System.Collections.Immutable;
using Akka.Actor;
using Akka.Event;
using KvmActors.Runtime.Bus;
using KvmActors.Runtime.Devices;

namespace KvmActors.Devices.Uart16550;

/// <summary>
/// A 16550A UART on the port bus (COM1: <c>ports = ["0x3f8-0x3ff"]</c>, offsets 0..7), a thin actor
/// around <see cref="Uart16550"/>.
/// <para>Options:</para>
/// <list type="bullet">
/// <item><c>sink</c>: where transmitted bytes go (default <c>stdout</c>; see <see cref="HostIo.OpenOutput"/>).</item>
/// <item><c>input</c>: what the receiver gets: <c>none</c> (default), <c>stdin</c> or <c>memory:NAME</c>.</item>
/// <item><c>irq</c>: the interrupt line (default: the device's first configured IRQ, else 4).</item>
/// </list>
/// The registers are byte-wide: a wider access acts on the register at its first byte only, a read
/// returning that register in the low byte and zeros above it. Offsets past 7 read as all ones and
/// ignore writes.
/// </summary>
[DeviceType("uart-16550")]
public sealed class Uart16550Device : DeviceActor
{
    private readonly Uart16550 _uart = new();
    private readonly IGuestOutput _sink;
    private readonly IHostInput? _inputSource;
    private readonly int _irq;

    private IActorRef? _input;          // the HostInputReader child
    private bool _inputRequested;       // a RequestHostInput is unanswered
    private bool _inputEnded;
    private ImmutableArray<byte> _held = ImmutableArray<byte>.Empty; // received from the host, not yet taken by the FIFO
    private int _heldOffset;

    public Uart16550Device(DeviceContext context) : base(context)
    {
        var options = context.Options;
        options.RejectUnknown("sink", "input", "irq");

        long irq = options.GetInteger("irq", context.Irqs.Count > 0 ? context.Irqs[0] : 4);
        if (irq is < 0 or > 1023) throw options.Error("irq", $"{irq} is not an interrupt line");
        _irq = (int)irq;

        // HOCON reads `null` (even quoted) as no value: take it as the null sink the user meant.
        var sink = options.GetString("sink", "stdout") ?? "none";
        try { _sink = HostIo.OpenOutput(sink, options.BaseDirectory); }
        catch (Exception e) when (e is ArgumentException or IOException or UnauthorizedAccessException)
        {
            throw options.Error("sink", e.Message);
        }

        var input = options.GetString("input", "none") ?? "none";
        try { _inputSource = HostIo.OpenInput(input); }
        catch (ArgumentException e) { throw options.Error("input", e.Message); }

        _uart.Transmitted += Transmit;
        _uart.InterruptChanged += level => SetIrq(_irq, level);
    }

    protected override void PreStart()
    {
        if (_inputSource is not null) _input = Context.ActorOf(HostInputReader.Props(_inputSource), "host-input");
        RequestInput();
    }

    protected override void PostStop()
    {
        _sink.Flush();
        (_sink as IDisposable)?.Dispose(); // closes file sinks; shared ones (stdout, memory) are not owned
    }

    private void Transmit(byte b) => _sink.Write(new ReadOnlySpan<byte>(in b));

    protected override ulong OnRead(DeviceAccess access)
    {
        if (access.Offset > 7) return access.AllOnes;
        ulong v = _uart.Read((int)access.Offset);
        AfterGuestAccess();
        return v;
    }

    protected override void OnWrite(DeviceAccess access, ulong value)
    {
        if (access.Offset > 7) return;
        _uart.Write((int)access.Offset, (byte)value);
        AfterGuestAccess();
    }

    protected override void OnMessage(object message)
    {
        switch (message)
        {
            case HostInputReceived received:
                _inputRequested = false;
                _held = received.Bytes;
                _heldOffset = 0;
                FeedHeld();
                RequestInput();
                break;
            case HostInputEnded ended:
                _inputRequested = false;
                _inputEnded = true;
                Log.Debug("{0}: host input ended ({1})", Device.Name, ended.Why);
                break;
            default:
                Unhandled(message);
                break;
        }
    }

    // A guest access may have made room (RBR read, FIFO clear, loopback off): refill from the host.
    private void AfterGuestAccess()
    {
        if (_input is null) return;
        FeedHeld();
        RequestInput();
    }

    private void FeedHeld()
    {
        if (_heldOffset >= _held.Length) return;
        _heldOffset += _uart.Receive(_held.AsSpan()[_heldOffset..]);
    }

    // Ask for more only when nothing is held or in flight, so bytes arrive in order and never pile up.
    private void RequestInput()
    {
        if (_input is null || _inputRequested || _inputEnded || _heldOffset < _held.Length) return;
        int space = _uart.ReceiveSpace;
        if (space <= 0) return;
        _inputRequested = true;
        _input.Tell(new RequestHostInput(space));
    }
}

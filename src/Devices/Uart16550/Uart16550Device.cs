using System.Collections.Immutable;
using Akka.Actor;
using Akka.Event;
using KvmActors.Sdk;

namespace KvmActors.Devices.Uart16550;

/// <summary>
/// A 16550A UART on the port bus (COM1: <c>ports = ["0x3f8-0x3ff"]</c>, offsets 0..7), a thin actor
/// around <see cref="Uart16550"/>.
/// <para>Options:</para>
/// <list type="bullet">
/// <item><c>sink</c>: where transmitted bytes go (default <c>stdout</c>; see <see cref="HostIo.OpenOutput"/>).
/// The sink's buffer is the line: while it is full the transmitter stays busy (LSR.THRE and TEMT clear), so a
/// polling guest waits in guest code; when the sink has room again the device drains the TX FIFO and THR
/// empties (with the THRE interrupt if enabled). No device handler ever waits for host I/O.</item>
/// <item><c>input</c>: what the receiver gets: <c>none</c> (default), <c>stdin</c> or <c>memory:NAME</c>.</item>
/// <item><c>irq</c>: the interrupt line (default: the device's first configured IRQ, else 4).</item>
/// </list>
/// The registers are byte-wide: a wider access acts on the register at its first byte only, a read
/// returning that register in the low byte and zeros above it. Offsets past 7 read as all ones and
/// ignore writes.
/// <para>The UART keeps its guest-visible state across a restart of its actor (registers, FIFOs, the sink,
/// host bytes not yet received): a driver in the guest never sees a restart.</para>
/// <para>Snapshot: the state (<see cref="UartSaved"/>, version 1) is the registers and both FIFOs
/// (<see cref="Uart16550State"/>) and the host input read but not yet taken by the receiver. A restored UART
/// sends the TX FIFO's bytes on as its sink takes them.</para>
/// </summary>
[DeviceType("uart-16550")]
public sealed class Uart16550Device : DeviceActor
{
    /// <summary>Everything guest-visible, kept across restarts of the actor.</summary>
    private sealed class State(Uart16550 uart, IGuestOutput sink, IHostInput? inputSource)
    {
        public readonly Uart16550 Uart = uart;
        public readonly IGuestOutput Sink = sink;
        public readonly IHostInput? InputSource = inputSource;
        public bool InputEnded;
        public ImmutableArray<byte> Held = ImmutableArray<byte>.Empty; // received from the host, not yet taken by the FIFO
        public int HeldOffset;
    }

    /// <summary>The UART's snapshot record: the chip, and host input already read that the receiver has not taken yet.</summary>
    public sealed record UartSaved(Uart16550State Uart, byte[] HeldInput);

    public const int StateVersion = 1;

    private readonly State _state;
    private readonly int _irq;
    private readonly Action<bool> _onInterrupt;
    private bool _waitingForSink;       // a SinkWritable is due (one at a time)

    private IActorRef? _input;          // the HostInputReader child (one per incarnation)
    private bool _inputRequested;       // a RequestHostInput is unanswered

    private Uart16550 _uart => _state.Uart;
    private IGuestOutput _sink => _state.Sink;
    private bool _inputEnded { get => _state.InputEnded; set => _state.InputEnded = value; }
    private ImmutableArray<byte> _held { get => _state.Held; set => _state.Held = value; }
    private int _heldOffset { get => _state.HeldOffset; set => _state.HeldOffset = value; }

    protected override bool KeepsStateOnRestart => true;

    public Uart16550Device(DeviceContext context) : base(context)
    {
        var options = context.Options;
        options.RejectUnknown("sink", "input", "irq");

        _irq = (int)options.GetInteger("irq", context.Irqs.Count > 0 ? context.Irqs[0] : 4, 0, 1023);

        _state = Kept(() =>
        {
            // HOCON reads `null` (even quoted) as no value: GetString takes it as the null sink the user meant.
            var sink = options.GetString("sink", "stdout");
            IGuestOutput output;
            try { output = HostIo.OpenOutput(sink, options.BaseDirectory); }
            catch (Exception e) when (e is ArgumentException or IOException or UnauthorizedAccessException)
            {
                throw options.Error("sink", e.Message);
            }

            var input = options.GetString("input", "none", whenNull: "none");
            IHostInput? source;
            try { source = HostIo.OpenInput(input); }
            catch (ArgumentException e) { throw options.Error("input", e.Message); }
            return new State(new Uart16550(), output, source);
        });

        // Handlers of this incarnation; PostStop detaches them so a restarted UART does not send twice.
        _onInterrupt = level => SetIrq(_irq, level);
        _uart.HostTransmit = _state.Sink.TryWrite;
        _uart.InterruptChanged += _onInterrupt;
    }

    protected override void PreStart()
    {
        if (_state.InputSource is not null) _input = Context.ActorOf(HostInputReader.Props(_state.InputSource), "host-input");
        RequestInput();
        WaitForSinkIfBusy(); // a restart may find bytes still waiting for the sink
    }

    /// <summary>The sink has room again (sent by its writer thread through <see cref="IGuestOutput.NotifyWhenWritable"/>).</summary>
    private sealed class SinkWritable
    {
        public static readonly SinkWritable Instance = new();
    }

    protected override void PostStop()
    {
        _uart.InterruptChanged -= _onInterrupt;
        if (Restarting) return; // the next incarnation goes on with the same sink
        (_sink as IDisposable)?.Dispose(); // closes file sinks; shared ones (stdout, memory) are not owned
    }

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
        WaitForSinkIfBusy();
        AfterGuestAccess();
    }

    // Bytes the sink could not take wait in the TX FIFO; ask to be told when it has room.
    private void WaitForSinkIfBusy()
    {
        if (_waitingForSink || _uart.TxCount == 0) return;
        _waitingForSink = true;
        _sink.NotifyWhenWritable(Self, SinkWritable.Instance);
    }

    // The registers a vCPU may read without asking (see DeviceReadPath): every one whose read has no effect
    // right now. Left out: RBR (a read pops the RX FIFO), IIR while it reports THRE (a read clears it), LSR
    // while it holds error bits (a read clears them), MSR while it holds delta bits (likewise). An LSR read with
    // FIFOs off may still recompute the hidden FIFO-error latch, which nothing can observe until FIFOs are
    // enabled, and enabling them clears it: so that read counts as effect-free.
    protected override int ReadSnapshotOffsets => 8;
    protected override int ReadSnapshotSizes => (1 << 1) | (1 << 2) | (1 << 4); // wider reads: the register, zeros above

    protected override ulong CaptureReadSnapshot(Span<ulong> values)
    {
        var u = _uart;
        ulong valid = 0;
        if ((u.Lcr & UartLcr.Dlab) != 0)
        {
            values[UartReg.Dll] = (byte)u.Divisor;
            values[UartReg.Dlm] = (byte)(u.Divisor >> 8);
            valid |= (1UL << UartReg.Dll) | (1UL << UartReg.Dlm);
        }
        else
        {
            values[UartReg.Ier] = u.Ier;
            valid |= 1UL << UartReg.Ier;
        }
        var iir = u.PeekIir();
        if ((iir & UartIir.IdMask) != UartIir.ThrEmpty) { values[UartReg.Iir] = iir; valid |= 1UL << UartReg.Iir; }
        values[UartReg.Lcr] = u.Lcr;
        values[UartReg.Mcr] = u.Mcr;
        values[UartReg.Scr] = u.Scr;
        valid |= (1UL << UartReg.Lcr) | (1UL << UartReg.Mcr) | (1UL << UartReg.Scr);
        var lsr = u.PeekLsr();
        if ((lsr & (UartLsr.Errors | UartLsr.RxFifoError)) == 0) { values[UartReg.Lsr] = lsr; valid |= 1UL << UartReg.Lsr; }
        var msr = u.PeekMsr();
        if ((msr & UartMsr.Deltas) == 0) { values[UartReg.Msr] = msr; valid |= 1UL << UartReg.Msr; }
        return valid;
    }

    protected override void OnMessage(object message)
    {
        switch (message)
        {
            case HostInputReceived received:
                _inputRequested = false;
                // Held bytes remain only after a restore put some back while a request was out: they come first.
                _held = _heldOffset < _held.Length ? _held[_heldOffset..].AddRange(received.Bytes) : received.Bytes;
                _heldOffset = 0;
                FeedHeld();
                RequestInput();
                break;
            case SinkWritable:
                _waitingForSink = false;
                _uart.Drain();
                WaitForSinkIfBusy();
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

    protected override DeviceState SaveState() =>
        DeviceState.Of(Device.Type, StateVersion, new UartSaved(_uart.Save(), _held.AsSpan()[_heldOffset..].ToArray()));

    protected override void RestoreState(DeviceState state)
    {
        state.ExpectVersion(StateVersion);
        var saved = state.Read<UartSaved>();
        // Host input is asked for at most the receiver's free space at a time, so more than a FIFO cannot be held.
        if (saved.HeldInput.Length > Uart16550.FifoSize)
            throw new DeviceStateException($"uart-16550 state: heldInput: {saved.HeldInput.Length} bytes, more than {Uart16550.FifoSize}");
        _uart.Restore(saved.Uart);
        _held = [.. saved.HeldInput];
        _heldOffset = 0;
        _uart.Drain(); // bytes the guest wrote before the snapshot go on to the sink, as far as it takes them
        WaitForSinkIfBusy();
        AfterGuestAccess();
    }

    // A guest access may have made room (RBR read, FIFO clear, loopback off): refill from the host.
    private void AfterGuestAccess()
    {
        FeedHeld(); // held bytes can be there without an input source: restored from a snapshot
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

using KvmActors.Sdk;

namespace KvmActors.Devices.Uart16550;

/// <summary>Register offsets within the UART's 8-port block (COM1: 0x3f8 + offset).</summary>
public static class UartReg
{
    public const int Rbr = 0, Thr = 0, Dll = 0;
    public const int Ier = 1, Dlm = 1;
    public const int Iir = 2, Fcr = 2;
    public const int Lcr = 3, Mcr = 4, Lsr = 5, Msr = 6, Scr = 7;
}

/// <summary>Interrupt Enable Register bits.</summary>
public static class UartIer
{
    public const byte ReceivedData = 0x01;   // ERBFI: data available and character timeout
    public const byte ThrEmpty = 0x02;       // ETBEI
    public const byte LineStatus = 0x04;     // ELSI
    public const byte ModemStatus = 0x08;    // EDSSI
}

/// <summary>Interrupt Identification Register values (bits 3..0) and the FIFO-enabled bits.</summary>
public static class UartIir
{
    public const byte NoInterrupt = 0x01;
    public const byte LineStatus = 0x06;
    public const byte ReceivedData = 0x04;
    public const byte CharacterTimeout = 0x0C;
    public const byte ThrEmpty = 0x02;
    public const byte ModemStatus = 0x00;
    public const byte IdMask = 0x0F;
    public const byte FifosEnabled = 0xC0;
}

/// <summary>FIFO Control Register bits.</summary>
public static class UartFcr
{
    public const byte Enable = 0x01;
    public const byte ClearRx = 0x02;
    public const byte ClearTx = 0x04;
    public const byte DmaMode = 0x08;
    public const byte Trigger1 = 0x00, Trigger4 = 0x40, Trigger8 = 0x80, Trigger14 = 0xC0;
}

/// <summary>Line Control Register bits.</summary>
public static class UartLcr
{
    public const byte WordLengthMask = 0x03;
    public const byte TwoStopBits = 0x04;
    public const byte ParityEnable = 0x08;
    public const byte EvenParity = 0x10;
    public const byte StickParity = 0x20;
    public const byte Break = 0x40;
    public const byte Dlab = 0x80;
}

/// <summary>Modem Control Register bits.</summary>
public static class UartMcr
{
    public const byte Dtr = 0x01, Rts = 0x02, Out1 = 0x04, Out2 = 0x08, Loopback = 0x10;
    public const byte Writable = 0x1F;
}

/// <summary>Line Status Register bits.</summary>
public static class UartLsr
{
    public const byte DataReady = 0x01, Overrun = 0x02, Parity = 0x04, Framing = 0x08, Break = 0x10;
    public const byte ThrEmpty = 0x20, TransmitterEmpty = 0x40, RxFifoError = 0x80;
    /// <summary>The bits that raise a receiver line status interrupt and clear on an LSR read.</summary>
    public const byte Errors = Overrun | Parity | Framing | Break;
}

/// <summary>Modem Status Register bits.</summary>
public static class UartMsr
{
    public const byte DeltaCts = 0x01, DeltaDsr = 0x02, TrailingEdgeRi = 0x04, DeltaDcd = 0x08;
    public const byte Cts = 0x10, Dsr = 0x20, Ri = 0x40, Dcd = 0x80;
    public const byte Deltas = 0x0F, Inputs = 0xF0;
}

/// <summary>
/// A <see cref="Uart16550"/>'s guest-visible state (register fields as the model keeps them; FIFOs oldest first).
/// FCR is write-only: what it set is <paramref name="FifoEnabled"/> and <paramref name="RxTrigger"/>.
/// </summary>
/// <param name="Rbr">The last byte read, which RBR returns again while the receiver is empty.</param>
/// <param name="LineErrors">LSR bits OE, PE, FE, BI, sticky until LSR is read.</param>
/// <param name="RxFifoError">LSR bit 7's latch.</param>
/// <param name="ThrEmptyInterrupt">The THRE interrupt latch (set when THR empties, cleared by an IIR read or a THR write).</param>
/// <param name="MsrInputs">MSR bits 7..4 as the guest sees them; <paramref name="HostModemInputs"/>: the host's lines (hidden in loopback).</param>
/// <param name="BreakLooped">A loopback break already delivered its one break byte.</param>
/// <param name="Rx">Received bytes the guest has not read (pending input); <paramref name="RxErrors"/>: each one's LSR error bits.</param>
/// <param name="Tx">Bytes the guest wrote that the host has not taken yet: sent on when the host has room.</param>
public sealed record Uart16550State(
    byte Ier, byte Lcr, byte Mcr, byte Scr, byte Dll, byte Dlm,
    bool FifoEnabled, int RxTrigger, byte Rbr, byte LineErrors, bool RxFifoError, bool ThrEmptyInterrupt,
    byte MsrInputs, byte MsrDeltas, byte HostModemInputs, bool BreakLooped,
    byte[] Rx, byte[] RxErrors, byte[] Tx, long TransmitOverruns);

/// <summary>The host end of a UART's line: takes 0..all of the offered bytes, never blocking, and returns how many.</summary>
public delegate int HostTransmit(ReadOnlySpan<byte> bytes);

/// <summary>
/// A 16550A UART as the guest sees it: registers, 16-byte FIFOs and interrupt logic, with no clock
/// and no actors so it can be tested alone.
/// <para>
/// The transmitter runs at the host's pace: with a <see cref="HostTransmit"/> callback, bytes written to THR
/// wait in the TX FIFO (16 bytes with FIFOs enabled, else the one-byte THR) until the host accepts them, and
/// LSR.THRE and TEMT stay clear meanwhile, as on a chip whose line is slower than its CPU; the host calls
/// <see cref="Drain"/> when it has room again, and THR emptying raises the THRE interrupt as the datasheet
/// says. A byte written while the FIFO is full is lost, as on the chip. Without a callback the host is
/// always ready (the transmitter is instant: THRE and TEMT read as set again at once).
/// Other simplifications, all invisible to a guest that cannot time the line: the receive line goes idle as soon as a burst has been delivered, so the FIFO
/// character timeout counts as already elapsed whenever the RX FIFO holds fewer bytes than the trigger
/// level; divisor, word length, parity and stop bits are stored and read back but do not alter data
/// (the host end is not a wire, and a guest that never programs LCR must still print readable text).
/// Parity and framing errors therefore never occur; a break is received when the guest sends one in
/// loopback mode.
/// </para>
/// </summary>
public sealed class Uart16550
{
    public const int FifoSize = 16;

    /// <summary>CTS, DSR and DCD asserted: a console cable is plugged in.</summary>
    public const byte DefaultModemInputs = UartMsr.Cts | UartMsr.Dsr | UartMsr.Dcd;

    private readonly ByteFifo _rx = new();
    private readonly ByteFifo _tx = new();

    private byte _ier, _lcr, _mcr, _scr;
    private byte _dll = 0x01, _dlm;     // undefined after reset on the chip; 1 = 115200 baud
    private bool _fifoEnabled;
    private int _rxTrigger = 1;
    private byte _rbr;                   // last byte read, returned again when the RX side is empty
    private byte _lineErrors;            // LSR OE|PE|FE|BI: sticky until LSR is read
    private bool _rxFifoError;           // LSR bit 7: an errored byte entered the FIFO; re-evaluated on LSR read
    private bool _thrEmptyInterrupt;     // THRE interrupt latch: set when THR empties, cleared by IIR read or THR write
    private byte _msrInputs;             // MSR bits 7..4 as currently seen (host lines or, in loopback, MCR)
    private byte _msrDeltas;             // MSR bits 3..0
    private byte _hostModemInputs = DefaultModemInputs;
    private bool _breakLooped;           // break seen by the receiver in loopback, so it loads one break byte per break
    private bool _irqLevel;

    public Uart16550()
    {
        _msrInputs = _hostModemInputs;
    }

    /// <summary>A byte leaves the transmitter (not raised in loopback, where it goes to the receiver).</summary>
    public event Action<byte>? Transmitted;

    /// <summary>
    /// The host end of the line: offered the bytes waiting in the transmitter, it returns how many it took
    /// (0..all) without blocking. Null: the host takes every byte at once.
    /// </summary>
    public HostTransmit? HostTransmit { get; set; }

    /// <summary>Bytes written to THR while the TX FIFO was full, and so lost.</summary>
    public long TransmitOverruns { get; private set; }

    /// <summary>The IRQ output (<see cref="InterruptPending"/>) changed level.</summary>
    public event Action<bool>? InterruptChanged;

    // ---- host-facing state ----

    /// <summary>
    /// The IRQ line as wired on a PC: the chip's interrupt output gated by the OUT2 pin. The pin is
    /// driven by MCR OUT2 and forced inactive in loopback mode, so loopback also masks the line.
    /// </summary>
    public bool InterruptPending => ChipInterrupt && (_mcr & UartMcr.Out2) != 0 && !Loopback;

    /// <summary>The chip's own interrupt output: some enabled source is pending (IIR bit 0 clear).</summary>
    public bool ChipInterrupt => (PeekIir() & UartIir.NoInterrupt) == 0;

    /// <summary>
    /// Free RX FIFO slots for host input: 16 (or 1 with FIFOs disabled) minus what the guest has not read.
    /// 0 in loopback mode, where the receiver is disconnected from the line.
    /// </summary>
    public int ReceiveSpace => Loopback ? 0 : RxCapacity - _rx.Count;

    /// <summary>
    /// Host input arriving on the line. Accepts at most <see cref="ReceiveSpace"/> bytes and returns how
    /// many it took; the caller keeps the rest for later, so host input never causes an overrun.
    /// </summary>
    public int Receive(ReadOnlySpan<byte> bytes)
    {
        int n = Math.Min(ReceiveSpace, bytes.Length);
        for (int i = 0; i < n; i++) ReceiveByte(bytes[i], 0);
        UpdateIrq();
        return n;
    }

    /// <summary>
    /// The host's CTS/DSR/RI/DCD lines, in MSR bit positions 7..4 (default <see cref="DefaultModemInputs"/>).
    /// Changes set the MSR delta bits as the chip would; in loopback they are remembered but not seen.
    /// </summary>
    public byte ModemInputs
    {
        get => _hostModemInputs;
        set
        {
            _hostModemInputs = (byte)(value & UartMsr.Inputs);
            RefreshModemInputs();
            UpdateIrq();
        }
    }

    // ---- inspection without side effects (tests, debugging) ----

    public int RxCount => _rx.Count;
    public int TxCount => _tx.Count;
    public bool FifoEnabled => _fifoEnabled;
    public int RxTriggerLevel => _rxTrigger;
    public bool Loopback => (_mcr & UartMcr.Loopback) != 0;
    public ushort Divisor => (ushort)(_dll | _dlm << 8);
    public byte Ier => _ier;
    public byte Lcr => _lcr;
    public byte Mcr => _mcr;
    public byte Scr => _scr;
    private int RxCapacity => _fifoEnabled ? FifoSize : 1;
    private int TxCapacity => _fifoEnabled ? FifoSize : 1;

    /// <summary>IIR as a read would return it, without clearing the THRE interrupt.</summary>
    public byte PeekIir()
    {
        byte id;
        bool rxData = _rx.Count > 0;
        if ((_ier & UartIer.LineStatus) != 0 && _lineErrors != 0) id = UartIir.LineStatus;
        else if ((_ier & UartIer.ReceivedData) != 0 && rxData && (!_fifoEnabled || _rx.Count >= _rxTrigger)) id = UartIir.ReceivedData;
        else if ((_ier & UartIer.ReceivedData) != 0 && rxData) id = UartIir.CharacterTimeout; // FIFO mode, below trigger, line idle
        else if ((_ier & UartIer.ThrEmpty) != 0 && _thrEmptyInterrupt) id = UartIir.ThrEmpty;
        else if ((_ier & UartIer.ModemStatus) != 0 && _msrDeltas != 0) id = UartIir.ModemStatus;
        else id = UartIir.NoInterrupt;
        return (byte)(id | (_fifoEnabled ? UartIir.FifosEnabled : 0));
    }

    /// <summary>LSR as a read would return it, without clearing the error bits.</summary>
    public byte PeekLsr()
    {
        int v = _lineErrors;
        if (_rx.Count > 0) v |= UartLsr.DataReady;
        // The shift register is modelled as part of the host's side: TEMT is set exactly when nothing waits.
        if (_tx.Count == 0) v |= UartLsr.ThrEmpty | UartLsr.TransmitterEmpty;
        if (_fifoEnabled && _rxFifoError) v |= UartLsr.RxFifoError;
        return (byte)v;
    }

    /// <summary>MSR as a read would return it, without clearing the delta bits.</summary>
    public byte PeekMsr() => (byte)(_msrInputs | _msrDeltas);

    // ---- guest-facing registers ----

    /// <summary>A guest read of the register at <paramref name="offset"/> (0..7; others read 0xFF).</summary>
    public ulong Read(int offset)
    {
        byte v;
        bool dlab = (_lcr & UartLcr.Dlab) != 0;
        switch (offset)
        {
            case 0: v = dlab ? _dll : ReadRbr(); break;
            case 1: v = dlab ? _dlm : _ier; break;
            case 2: v = ReadIir(); break;
            case 3: v = _lcr; break;
            case 4: v = _mcr; break;
            case 5: v = ReadLsr(); break;
            case 6: v = ReadMsr(); break;
            case 7: v = _scr; break;
            default: return 0xFF;
        }
        UpdateIrq();
        return v;
    }

    /// <summary>A guest write of the register at <paramref name="offset"/> (0..7; others are ignored).</summary>
    public void Write(int offset, byte value)
    {
        bool dlab = (_lcr & UartLcr.Dlab) != 0;
        try
        {
            switch (offset)
            {
                case 0: if (dlab) _dll = value; else WriteThr(value); break;
                case 1: if (dlab) _dlm = value; else WriteIer(value); break;
                case 2: WriteFcr(value); break;
                case 3: _lcr = value; LoopBreak(); break;
                case 4: WriteMcr(value); break;
                case 5: case 6: break; // LSR and MSR writes are for factory test only
                case 7: _scr = value; break;
            }
        }
        finally
        {
            // Even if an output sink throws, the IRQ line must match the registers.
            UpdateIrq();
        }
    }

    /// <summary>The master reset: registers to their datasheet reset values; SCR and the divisor keep theirs.</summary>
    public void Reset()
    {
        _ier = 0; _lcr = 0; _mcr = 0;
        _fifoEnabled = false; _rxTrigger = 1;
        _rx.Clear(); _tx.Clear();
        _lineErrors = 0; _rxFifoError = false;
        _thrEmptyInterrupt = false; _breakLooped = false;
        _msrInputs = _hostModemInputs; _msrDeltas = 0;
        UpdateIrq();
    }

    private byte ReadRbr()
    {
        if (_rx.Count == 0) return _rbr;
        _rbr = _rx.Dequeue(out _);
        // The errors of the byte now at the top of the FIFO become visible in LSR.
        if (_rx.Count > 0) _lineErrors |= _rx.PeekErrors();
        return _rbr;
    }

    private byte ReadIir()
    {
        byte v = PeekIir();
        if ((v & UartIir.IdMask) == UartIir.ThrEmpty) _thrEmptyInterrupt = false;
        return v;
    }

    private byte ReadLsr()
    {
        byte v = PeekLsr();
        _lineErrors = 0;
        _rxFifoError = _rx.AnyErrors(); // bit 7 stays while errored bytes remain in the FIFO
        return v;
    }

    private byte ReadMsr()
    {
        byte v = PeekMsr();
        _msrDeltas = 0;
        return v;
    }

    private void WriteThr(byte value)
    {
        _thrEmptyInterrupt = false;
        if (_tx.Count >= TxCapacity) { TransmitOverruns++; return; } // the guest did not wait for THRE
        _tx.Enqueue(value, 0);
        Transmit();
    }

    /// <summary>
    /// The host has room again: offer it the bytes waiting in the transmitter. Returns whether the
    /// transmitter is now empty (THRE, with its interrupt if enabled).
    /// </summary>
    public bool Drain()
    {
        if (_tx.Count > 0) Transmit();
        UpdateIrq();
        return _tx.Count == 0;
    }

    // Moves bytes out of the TX FIFO: to the receiver in loopback (at once), else as far as the host takes them.
    private void Transmit()
    {
        Span<byte> chunk = stackalloc byte[FifoSize];
        while (_tx.Count > 0)
        {
            int n = _tx.CopyTo(chunk);
            int taken;
            if (Loopback)
            {
                for (int i = 0; i < n; i++) ReceiveByte(chunk[i], 0);
                taken = n;
            }
            else
            {
                taken = HostTransmit is { } host ? Math.Clamp(host(chunk[..n]), 0, n) : n;
                for (int i = 0; i < taken; i++) Transmitted?.Invoke(chunk[i]);
            }
            _tx.Drop(taken);
            if (taken < n) return; // the host is full: the rest waits for Drain, THRE stays clear
        }
        if ((_ier & UartIer.ThrEmpty) != 0) _thrEmptyInterrupt = true;
    }

    private void WriteIer(byte value)
    {
        byte old = _ier;
        _ier = (byte)(value & 0x0F);
        // Enabling ETBEI while THR is empty raises THRE at once (drivers probe for this).
        if ((_ier & UartIer.ThrEmpty) == 0) _thrEmptyInterrupt = false;
        else if ((old & UartIer.ThrEmpty) == 0 && _tx.Count == 0) _thrEmptyInterrupt = true;
    }

    private void WriteFcr(byte value)
    {
        bool enable = (value & UartFcr.Enable) != 0;
        if (enable != _fifoEnabled)
        {
            // Switching between 16450 and FIFO mode empties both FIFOs.
            _fifoEnabled = enable;
            _rx.Clear(); _tx.Clear();
            _rxFifoError = false;
        }
        if (!enable) return; // the other bits are programmed only while FCR0 is set
        if ((value & UartFcr.ClearRx) != 0) { _rx.Clear(); _rxFifoError = false; }
        if ((value & UartFcr.ClearTx) != 0 && _tx.Count > 0)
        {
            _tx.Clear(); // THR is empty now: THRE (and its interrupt) as if the bytes had gone
            if ((_ier & UartIer.ThrEmpty) != 0) _thrEmptyInterrupt = true;
        }
        _rxTrigger = (value >> 6) switch { 0 => 1, 1 => 4, 2 => 8, _ => 14 };
    }

    private void WriteMcr(byte value)
    {
        _mcr = (byte)(value & UartMcr.Writable);
        RefreshModemInputs();
        LoopBreak();
    }

    /// <summary>A byte completes in the receiver: from the host line, or from the transmitter in loopback.</summary>
    private void ReceiveByte(byte value, byte errors)
    {
        if (_rx.Count >= RxCapacity)
        {
            // Overrun: only the loopback path can get here, since host input waits for ReceiveSpace.
            _lineErrors |= UartLsr.Overrun;
            if (!_fifoEnabled)
            {
                // 16450 mode: the new byte overwrites RBR.
                _rx.Clear();
                _rx.Enqueue(value, errors);
                _lineErrors |= errors;
            }
            // FIFO mode: the byte in the shift register is lost; the FIFO is unchanged.
            return;
        }
        _rx.Enqueue(value, errors);
        if (_rx.Count == 1) _lineErrors |= errors;
        if (errors != 0) _rxFifoError = true;
    }

    /// <summary>In loopback, a break sent by the transmitter reaches the receiver as one zero byte with BI.</summary>
    private void LoopBreak()
    {
        bool breaking = Loopback && (_lcr & UartLcr.Break) != 0;
        if (breaking && !_breakLooped) ReceiveByte(0, UartLsr.Break);
        _breakLooped = breaking;
    }

    private void RefreshModemInputs()
    {
        byte now = Loopback
            ? (byte)(((_mcr & UartMcr.Rts) << 3) | ((_mcr & UartMcr.Dtr) << 5) | ((_mcr & UartMcr.Out1) << 4) | ((_mcr & UartMcr.Out2) << 4))
            : _hostModemInputs;
        byte changed = (byte)(now ^ _msrInputs);
        if ((changed & UartMsr.Cts) != 0) _msrDeltas |= UartMsr.DeltaCts;
        if ((changed & UartMsr.Dsr) != 0) _msrDeltas |= UartMsr.DeltaDsr;
        if ((changed & UartMsr.Ri) != 0 && (now & UartMsr.Ri) == 0) _msrDeltas |= UartMsr.TrailingEdgeRi;
        if ((changed & UartMsr.Dcd) != 0) _msrDeltas |= UartMsr.DeltaDcd;
        _msrInputs = now;
    }

    private void UpdateIrq()
    {
        bool level = InterruptPending;
        if (level == _irqLevel) return;
        _irqLevel = level;
        InterruptChanged?.Invoke(level);
    }

    // ---- snapshot ----

    /// <summary>Everything guest-visible, as a record (the FIFOs oldest first): see <see cref="Uart16550State"/>.</summary>
    public Uart16550State Save()
    {
        var (rx, rxErrors) = _rx.ToArrays();
        var (tx, _) = _tx.ToArrays();
        return new Uart16550State(
            _ier, _lcr, _mcr, _scr, _dll, _dlm, _fifoEnabled, _rxTrigger, _rbr, _lineErrors, _rxFifoError,
            _thrEmptyInterrupt, _msrInputs, _msrDeltas, _hostModemInputs, _breakLooped, rx, rxErrors, tx, TransmitOverruns);
    }

    /// <summary>
    /// Takes a saved state, after checking every field (a <see cref="DeviceStateException"/> names the one that
    /// cannot be). Bytes restored into the TX FIFO are not sent here: the host calls <see cref="Drain"/> when it is
    /// ready. The IRQ output is brought to the restored registers' level.
    /// </summary>
    public void Restore(Uart16550State s)
    {
        Check(s.Ier <= 0x0F, "ier", $"0x{s.Ier:x2} has bits above 3 set");
        Check(s.Mcr <= UartMcr.Writable, "mcr", $"0x{s.Mcr:x2} has bits above 4 set");
        Check(s.RxTrigger is 1 or 4 or 8 or 14, "rxTrigger", $"{s.RxTrigger} is not 1, 4, 8 or 14");
        Check((s.LineErrors & ~UartLsr.Errors) == 0, "lineErrors", $"0x{s.LineErrors:x2} is not a set of LSR error bits (0x1e)");
        Check((s.MsrInputs & ~UartMsr.Inputs) == 0, "msrInputs", $"0x{s.MsrInputs:x2} has bits below 4 set");
        Check((s.MsrDeltas & ~UartMsr.Deltas) == 0, "msrDeltas", $"0x{s.MsrDeltas:x2} has bits above 3 set");
        Check((s.HostModemInputs & ~UartMsr.Inputs) == 0, "hostModemInputs", $"0x{s.HostModemInputs:x2} has bits below 4 set");
        int capacity = s.FifoEnabled ? FifoSize : 1;
        Check(s.Rx.Length <= capacity, "rx", $"{s.Rx.Length} bytes, more than the receiver holds ({capacity})");
        Check(s.RxErrors.Length == s.Rx.Length, "rxErrors", $"{s.RxErrors.Length} entries for {s.Rx.Length} received bytes");
        Check(s.RxErrors.All(e => (e & ~UartLsr.Errors) == 0), "rxErrors", "an entry is not a set of LSR error bits (0x1e)");
        Check(s.Tx.Length <= capacity, "tx", $"{s.Tx.Length} bytes, more than the transmitter holds ({capacity})");
        Check(s.TransmitOverruns >= 0, "transmitOverruns", "negative");

        _ier = s.Ier; _lcr = s.Lcr; _mcr = s.Mcr; _scr = s.Scr; _dll = s.Dll; _dlm = s.Dlm;
        _fifoEnabled = s.FifoEnabled; _rxTrigger = s.RxTrigger; _rbr = s.Rbr;
        _lineErrors = s.LineErrors; _rxFifoError = s.RxFifoError; _thrEmptyInterrupt = s.ThrEmptyInterrupt;
        _msrInputs = s.MsrInputs; _msrDeltas = s.MsrDeltas; _hostModemInputs = s.HostModemInputs; _breakLooped = s.BreakLooped;
        _rx.Clear(); _tx.Clear();
        for (int i = 0; i < s.Rx.Length; i++) _rx.Enqueue(s.Rx[i], s.RxErrors[i]);
        foreach (var b in s.Tx) _tx.Enqueue(b, 0);
        TransmitOverruns = s.TransmitOverruns;
        UpdateIrq();
    }

    private static void Check(bool ok, string field, string problem)
    {
        if (!ok) throw new DeviceStateException($"uart-16550 state: {field}: {problem}");
    }

    /// <summary>A 16-entry ring of bytes, each with the LSR error bits it was received with.</summary>
    private sealed class ByteFifo
    {
        private readonly byte[] _data = new byte[FifoSize];
        private readonly byte[] _errors = new byte[FifoSize];
        private int _head;
        public int Count { get; private set; }

        public void Enqueue(byte value, byte errors)
        {
            if (Count == FifoSize) throw new InvalidOperationException("FIFO full");
            int i = (_head + Count) % FifoSize;
            _data[i] = value;
            _errors[i] = errors;
            Count++;
        }

        public byte Dequeue(out byte errors)
        {
            if (Count == 0) throw new InvalidOperationException("FIFO empty");
            byte v = _data[_head];
            errors = _errors[_head];
            _head = (_head + 1) % FifoSize;
            Count--;
            return v;
        }

        /// <summary>Copies the bytes at the head (up to dest.Length), oldest first, without removing them.</summary>
        public int CopyTo(Span<byte> dest)
        {
            int n = Math.Min(Count, dest.Length);
            for (int i = 0; i < n; i++) dest[i] = _data[(_head + i) % FifoSize];
            return n;
        }

        public void Drop(int n)
        {
            if (n > Count) throw new InvalidOperationException("FIFO underflow");
            _head = (_head + n) % FifoSize;
            Count -= n;
        }

        public byte PeekErrors() => Count == 0 ? (byte)0 : _errors[_head];

        public bool AnyErrors()
        {
            for (int i = 0; i < Count; i++)
                if (_errors[(_head + i) % FifoSize] != 0) return true;
            return false;
        }

        public void Clear() { _head = 0; Count = 0; }

        /// <summary>The bytes and their error bits, oldest first, as new arrays.</summary>
        public (byte[] Data, byte[] Errors) ToArrays()
        {
            var data = new byte[Count];
            var errors = new byte[Count];
            for (int i = 0; i < Count; i++)
            {
                data[i] = _data[(_head + i) % FifoSize];
                errors[i] = _errors[(_head + i) % FifoSize];
            }
            return (data, errors);
        }
    }
}

using KvmActors.Devices.Uart16550;
using Xunit;

namespace KvmActors.Tests.Devices;

/// <summary>
/// Random register traffic and host input against the model. Besides "never throws" it checks the
/// datasheet invariants after every step and keeps shadows of the RX FIFO, the transmitted stream,
/// the trigger level, the THRE latch and the break/error bits, so a lost, duplicated or reordered byte
/// or a wrong interrupt fails with the seed and step that caused it (rerun one with UART_FUZZ_SEED).
/// </summary>
public sealed class Uart16550FuzzTests
{
    public static IEnumerable<object[]> Seeds() =>
        Enumerable.Range(1, 12).Select(i => new object[] { i * 7919 })
            .Append([Environment.GetEnvironmentVariable("UART_FUZZ_SEED") is { } s && int.TryParse(s, out var v) ? v : 20240601]);

    [Theory]
    [MemberData(nameof(Seeds))]
    public void Random_traffic_never_throws_and_keeps_the_invariants(int seed) => new Run(seed).Go(steps: 5000);

    private sealed class Run
    {
        private readonly int _seed;
        private readonly Random _rng;
        private readonly Uart16550 _uart = new();
        private readonly Queue<(byte Value, bool Break)> _rxShadow = new(); // what the RX FIFO must hold, in order
        private readonly Queue<byte> _hostPending = new(); // host bytes not yet accepted (the caller keeps them)
        private readonly List<byte> _expectedTx = [];
        private readonly List<byte> _sent = [];
        private bool? _lastIrqEvent;
        private byte _lastRbr;
        // Shadows of state the registers show only indirectly.
        private int _trigger = 1;
        private bool _thrInterrupt;      // THRE latch
        private bool _breakSeen;         // LSR.BI: a break byte reached the top of the RX FIFO since the last LSR read
        private bool _fifoErrorSeen;     // LSR bit 7
        private int _step;
        private string _op = "";

        public Run(int seed)
        {
            _seed = seed;
            _rng = new Random(seed);
            _uart.Transmitted += _sent.Add;
            _uart.InterruptChanged += level =>
            {
                Check(_lastIrqEvent != level, "IRQ event repeated the same level");
                _lastIrqEvent = level;
            };
        }

        private void Check(bool condition, string what)
        {
            if (!condition) Assert.Fail($"seed {_seed}, step {_step} ({_op}): {what}");
        }

        private int Capacity => _uart.FifoEnabled ? Uart16550.FifoSize : 1;
        private bool Dlab => (_uart.Lcr & UartLcr.Dlab) != 0;
        private bool Breaking => _uart.Loopback && (_uart.Lcr & UartLcr.Break) != 0;

        public void Go(int steps)
        {
            for (_step = 0; _step < steps; _step++)
            {
                try { Step(); }
                catch (Exception e) when (e is not Xunit.Sdk.XunitException)
                {
                    Assert.Fail($"seed {_seed}, step {_step} ({_op}): threw {e}");
                }
            }
        }

        private void Step()
        {
            {
                bool breakingBefore = Breaking;
                byte msrBefore = _uart.PeekMsr();
                int roll = _rng.Next(100);
                if (roll < 40) RandomWrite();
                else if (roll < 80) RandomRead();
                else if (roll < 92) HostBurst();
                else if (roll < 97) { _op = "modem inputs"; _uart.ModemInputs = (byte)_rng.Next(256); }
                else if (roll < 98)
                {
                    _op = "reset";
                    _uart.Reset();
                    _rxShadow.Clear();
                    _trigger = 1;
                    _thrInterrupt = _breakSeen = _fifoErrorSeen = false;
                }
                else if (!Dlab) { _op = "read out"; while ((_uart.PeekLsr() & UartLsr.DataReady) != 0) ReadRbr(); }
                // A break starting in loopback loads one zero byte, like a looped-back character.
                if (!breakingBefore && Breaking) LoopbackByte(0, isBreak: true);
                CheckModemDeltas(msrBefore);
                CheckInvariants();
            }
        }

        private int RandomOffset() => _rng.Next(20) == 0 ? _rng.Next(-2, 12) : _rng.Next(8);

        private byte RandomValue(int offset)
        {
            // Bias the values of a few registers so the interesting modes are reached often.
            return offset switch
            {
                UartReg.Lcr => (byte)(_rng.Next(4) == 0 ? _rng.Next(256) : _rng.Next(0x80)),
                UartReg.Mcr => (byte)(_rng.Next(3) == 0 ? _rng.Next(256) : _rng.Next(0x10) | (_rng.Next(2) * UartMcr.Out2)),
                UartReg.Fcr => (byte)(_rng.Next(8) == 0 ? 0 : _rng.Next(256) | UartFcr.Enable),
                _ => (byte)_rng.Next(256),
            };
        }

        private void RandomWrite()
        {
            int offset = RandomOffset();
            byte value = RandomValue(offset);
            _op = $"write {offset}={value:x2}";
            bool fifoBefore = _uart.FifoEnabled;
            bool thr = offset == UartReg.Thr && !Dlab;
            bool loop = _uart.Loopback;
            byte ierBefore = _uart.Ier;
            _uart.Write(offset, value);

            bool etbei = (_uart.Ier & UartIer.ThrEmpty) != 0;
            if (thr && loop) LoopbackByte(value, isBreak: false);
            else if (thr) _expectedTx.Add(value);
            if (thr) _thrInterrupt = etbei; // THR empties again at once
            if (offset == UartReg.Ier && !Dlab)
            {
                bool wasEnabled = (ierBefore & UartIer.ThrEmpty) != 0;
                if (!etbei) _thrInterrupt = false;
                else if (!wasEnabled) _thrInterrupt = true; // enabling ETBEI with THR empty
            }
            if (offset == UartReg.Fcr)
            {
                bool enable = (value & UartFcr.Enable) != 0;
                if (enable != fifoBefore) { _rxShadow.Clear(); _fifoErrorSeen = false; }
                if (enable && (value & UartFcr.ClearRx) != 0) { _rxShadow.Clear(); _fifoErrorSeen = false; }
                if (enable) _trigger = (value >> 6) switch { 0 => 1, 1 => 4, 2 => 8, _ => 14 };
            }
            Check(_uart.TxCount == 0, "the instant transmitter left bytes in the TX FIFO");
            Check(_sent.SequenceEqual(_expectedTx), "transmitted bytes differ from the THR writes");
        }

        /// <summary>A byte the transmitter sent in loopback: into the FIFO, or an overrun if it is full.</summary>
        private void LoopbackByte(byte value, bool isBreak)
        {
            if (_rxShadow.Count < Capacity)
            {
                _rxShadow.Enqueue((value, isBreak));
                if (isBreak) _fifoErrorSeen = true;
                if (isBreak && _rxShadow.Count == 1) _breakSeen = true;
                return;
            }
            Check((_uart.PeekLsr() & UartLsr.Overrun) != 0, "full FIFO in loopback did not set OE");
            if (!_uart.FifoEnabled)
            {
                // 16450 mode overwrites RBR.
                _rxShadow.Clear();
                _rxShadow.Enqueue((value, isBreak));
                if (isBreak) _breakSeen = true;
            }
        }

        private void RandomRead()
        {
            int offset = RandomOffset();
            _op = $"read {offset}";
            if (offset == UartReg.Rbr && !Dlab) { ReadRbr(); return; }
            byte iirBefore = _uart.PeekIir(), lsrBefore = _uart.PeekLsr(), msrBefore = _uart.PeekMsr();
            ulong v = _uart.Read(offset);
            Check(v <= 0xFF, "read wider than a byte");
            switch (offset)
            {
                case UartReg.Iir:
                    Check(v == iirBefore, "IIR read differs from the peeked value");
                    if ((v & UartIir.IdMask) == UartIir.ThrEmpty)
                    {
                        _thrInterrupt = false;
                        Check((_uart.PeekIir() & UartIir.IdMask) != UartIir.ThrEmpty, "IIR read did not clear THRE");
                    }
                    break;
                case UartReg.Lsr:
                    Check(v == lsrBefore, "LSR read differs from the peeked value");
                    Check((_uart.PeekLsr() & UartLsr.Errors) == 0, "LSR read did not clear the error bits");
                    _breakSeen = false;
                    _fifoErrorSeen = _rxShadow.Any(e => e.Break);
                    break;
                case UartReg.Msr:
                    Check(v == msrBefore, "MSR read differs from the peeked value");
                    Check((_uart.PeekMsr() & UartMsr.Deltas) == 0, "MSR read did not clear the deltas");
                    break;
                case UartReg.Ier when !Dlab:
                    Check((v & 0xF0) == 0, "IER upper bits read back");
                    break;
                case UartReg.Mcr:
                    Check((v & 0xE0) == 0, "MCR upper bits read back");
                    break;
                case < 0 or > 7:
                    Check(v == 0xFF, "offset outside the block did not read all ones");
                    break;
            }
        }

        private void ReadRbr()
        {
            bool had = _rxShadow.Count > 0;
            byte v = (byte)_uart.Read(UartReg.Rbr);
            if (had)
            {
                byte expected = _rxShadow.Dequeue().Value;
                Check(v == expected, $"RBR gave {v:x2}, expected {expected:x2}");
                _lastRbr = v;
                if (_rxShadow.TryPeek(out var next) && next.Break) _breakSeen = true;
            }
            else
            {
                Check(v == _lastRbr, "RBR on an empty receiver did not repeat the last byte");
            }
        }

        private void HostBurst()
        {
            int n = _rng.Next(41);
            for (int i = 0; i < n; i++) _hostPending.Enqueue((byte)_rng.Next(256));
            _op = $"host burst {n} (pending {_hostPending.Count})";
            var offer = _hostPending.ToArray();
            int space = _uart.ReceiveSpace;
            bool overrunBefore = (_uart.PeekLsr() & UartLsr.Overrun) != 0;
            int taken = _uart.Receive(offer);
            Check(taken == Math.Min(space, offer.Length), $"accepted {taken} of {offer.Length} with {space} free");
            Check(!_uart.Loopback || taken == 0, "host input accepted in loopback");
            for (int i = 0; i < taken; i++) _rxShadow.Enqueue((_hostPending.Dequeue(), false));
            Check(overrunBefore || (_uart.PeekLsr() & UartLsr.Overrun) == 0, "host input caused an overrun");
        }

        /// <summary>Each change of a modem input line since the step began must show as its delta bit.</summary>
        private void CheckModemDeltas(byte before)
        {
            byte now = _uart.PeekMsr();
            byte expectedInputs = _uart.Loopback
                ? (byte)(((_uart.Mcr & UartMcr.Rts) != 0 ? UartMsr.Cts : 0) | ((_uart.Mcr & UartMcr.Dtr) != 0 ? UartMsr.Dsr : 0) |
                         ((_uart.Mcr & UartMcr.Out1) != 0 ? UartMsr.Ri : 0) | ((_uart.Mcr & UartMcr.Out2) != 0 ? UartMsr.Dcd : 0))
                : _uart.ModemInputs;
            Check((now & UartMsr.Inputs) == expectedInputs, $"MSR inputs {now:x2}, expected {expectedInputs:x2}");
            if (_op == "reset") { Check((now & UartMsr.Deltas) == 0, "reset left MSR deltas"); return; }
            byte changed = (byte)((before ^ now) & UartMsr.Inputs);
            if ((changed & UartMsr.Cts) != 0) Check((now & UartMsr.DeltaCts) != 0, "CTS changed without DCTS");
            if ((changed & UartMsr.Dsr) != 0) Check((now & UartMsr.DeltaDsr) != 0, "DSR changed without DDSR");
            if ((changed & UartMsr.Dcd) != 0) Check((now & UartMsr.DeltaDcd) != 0, "DCD changed without DDCD");
            if ((changed & UartMsr.Ri) != 0)
            {
                bool fell = (now & UartMsr.Ri) == 0;
                if (fell) Check((now & UartMsr.TrailingEdgeRi) != 0, "RI fell without TERI");
                else if ((before & UartMsr.TrailingEdgeRi) == 0) Check((now & UartMsr.TrailingEdgeRi) == 0, "RI rose and set TERI");
            }
            if (changed == 0) Check((now & UartMsr.Deltas & ~before) == 0, "a delta bit appeared with no line change");
        }

        private void CheckInvariants()
        {
            byte lsr = _uart.PeekLsr(), iir = _uart.PeekIir(), msr = _uart.PeekMsr(), ier = _uart.Ier;
            int rx = _uart.RxCount, tx = _uart.TxCount;

            Check(rx is >= 0 and <= Uart16550.FifoSize && rx <= Capacity, $"RX count {rx} out of range");
            Check(tx is >= 0 and <= Uart16550.FifoSize, $"TX count {tx} out of range");
            Check(rx == _rxShadow.Count, $"RX count {rx}, shadow {_rxShadow.Count}: a byte was lost or invented");
            Check(((lsr & UartLsr.DataReady) != 0) == (rx > 0), "LSR.DR disagrees with the RX FIFO");
            Check(((lsr & UartLsr.ThrEmpty) != 0) == (tx == 0), "LSR.THRE disagrees with the TX FIFO");
            Check(((lsr & UartLsr.TransmitterEmpty) != 0) == (tx == 0), "LSR.TEMT disagrees with the transmitter");
            Check(_uart.FifoEnabled || (lsr & UartLsr.RxFifoError) == 0, "LSR bit 7 set in 16450 mode");
            Check(_uart.ReceiveSpace == (_uart.Loopback ? 0 : Capacity - rx), "ReceiveSpace is not the free FIFO room");
            Check(!_uart.FifoEnabled || _uart.RxTriggerLevel == _trigger, $"trigger {_uart.RxTriggerLevel}, FCR set {_trigger}");
            Check(((lsr & UartLsr.Break) != 0) == _breakSeen, "LSR.BI disagrees with the break bytes received");
            Check(((lsr & UartLsr.RxFifoError) != 0) == (_uart.FifoEnabled && _fifoErrorSeen), "LSR bit 7 disagrees with the break bytes in the FIFO");
            Check((lsr & (UartLsr.Parity | UartLsr.Framing)) == 0, "parity or framing error with no line to cause one");

            // IIR: the FIFO bits, a legal id, and the highest-priority enabled source.
            Check((iir & 0xC0) == (_uart.FifoEnabled ? 0xC0 : 0) && (iir & 0x30) == 0, $"IIR {iir:x2} has wrong fixed bits");
            int id = iir & UartIir.IdMask;
            bool lineStatus = (ier & UartIer.LineStatus) != 0 && (lsr & UartLsr.Errors) != 0;
            bool data = (ier & UartIer.ReceivedData) != 0 && rx > 0;
            bool modem = (ier & UartIer.ModemStatus) != 0 && (msr & UartMsr.Deltas) != 0;
            bool thre = (ier & UartIer.ThrEmpty) != 0 && (lsr & UartLsr.ThrEmpty) != 0;
            if (lineStatus) Check(id == UartIir.LineStatus, $"IIR {iir:x2}: line status pending");
            else if (data)
            {
                int want = _uart.FifoEnabled && rx < _trigger ? UartIir.CharacterTimeout : UartIir.ReceivedData;
                Check(id == want, $"IIR {iir:x2}: expected {want:x2} with {rx} bytes, trigger {_trigger}");
            }
            else if (thre && _thrInterrupt) Check(id == UartIir.ThrEmpty, $"IIR {iir:x2}: THR empty interrupt pending");
            else if (id == UartIir.ThrEmpty) Check(false, $"IIR {iir:x2}: THRE reported with no THR empty event pending");
            else if (modem) Check(id == UartIir.ModemStatus, $"IIR {iir:x2}: modem status pending");
            else Check(id == UartIir.NoInterrupt, $"IIR {iir:x2}: no enabled source is pending");

            bool line = id != UartIir.NoInterrupt && (_uart.Mcr & UartMcr.Out2) != 0 && !_uart.Loopback;
            Check(_uart.InterruptPending == line, "InterruptPending disagrees with IIR, OUT2 and loopback");
            Check((_lastIrqEvent ?? false) == line, "the last IRQ event does not match the line level");
        }
    }
}

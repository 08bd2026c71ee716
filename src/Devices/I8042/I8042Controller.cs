using KvmActors.Sdk;

namespace KvmActors.Devices.I8042;

/// <summary>What a write to the controller did that the device actor must act on.</summary>
public enum I8042Effect
{
    None,
    /// <summary>The guest pulsed the CPU reset line (command 0xFE, any 0xF0-0xFF command with bit 0 clear, or an output-port write with bit 0 clear).</summary>
    ResetPulsed,
}

/// <summary>A byte waiting in the 8042's output buffer, and whether it is from the auxiliary port.</summary>
public sealed record I8042Output(byte Value, bool Aux);

/// <summary>
/// An <see cref="I8042Controller"/>'s state: its 32 bytes of internal RAM (byte 0 is the command byte), the output
/// buffer (oldest first), the command waiting for its data byte, the status register's last-write bit, the data
/// latch (what a read of an empty buffer returns) and the output port.
/// </summary>
public sealed record I8042State(byte[] Ram, I8042Output[] Output, byte? PendingCommand, bool LastWriteWasCommand, byte LastData, byte OutputPort);

/// <summary>
/// A stub 8042 keyboard controller with nothing attached to it: enough of the register interface for a
/// guest to probe it, read and write its command byte and, above all, reset the machine through it.
/// </summary>
/// <remarks>
/// <para>Status register (read of port 0x64): bit 0 output buffer full (a reply is waiting at 0x60),
/// bit 1 input buffer full (always 0: every write is taken at once), bit 2 system flag (bit 2 of the
/// command byte, set by default), bit 3 last write was to the command port, bit 4 keyboard not inhibited
/// (always 1), bit 5 the waiting byte is from the auxiliary port, bits 6-7 (timeout, parity) 0.
/// Idle, before any write: 0x14.</para>
/// <para>Controller commands (write of port 0x64) that are modelled:
/// 0x20-0x3F read internal RAM byte (0x20 = command byte, default 0x44: system flag and scan-code
/// translation, interrupts off since this stub raises no IRQs);
/// 0x60-0x7F write internal RAM byte (the next byte written to 0x60);
/// 0xA7/0xA8 disable/enable the aux port, 0xAD/0xAE disable/enable the keyboard (command-byte bits 5/4);
/// 0xA9 test aux port and 0xAB test keyboard port (reply 0x00, no error); 0xAA self test (reply 0x55);
/// 0xD0 read output port; 0xD1 write output port (next data byte; bit 0 clear pulses reset, bit 1 is the
/// A20 gate, recorded only: KVM does not mask A20);
/// 0xD2/0xD3 write the keyboard/aux output buffer (the next data byte comes back as if the device sent it);
/// 0xD4 write to the aux device (next data byte, dropped: no mouse);
/// 0xDD/0xDF A20 off/on (output-port bit 1, recorded only);
/// 0xF0-0xFF pulse output-port bits 0-3 for those bits that are 0 in the command: bit 0 is the reset line,
/// so 0xFE (and any even command in this range) resets, 0xFF is a no-op.
/// Any other command is accepted and ignored (no reply).</para>
/// <para>Data port writes that are not the parameter of a controller command go to the keyboard. No keyboard
/// is attached: they are dropped without reply, so a guest keyboard driver times out and decides there is no
/// keyboard. (Answering with ACKs without an IRQ would leave bytes in the buffer that a guest would later
/// mistake for controller replies.)</para>
/// <para>Data port reads return the next waiting byte; with none waiting they return the last byte the
/// buffer held (what the latch of a real 8042 keeps), 0x00 before any.</para>
/// </remarks>
public sealed class I8042Controller
{
    public const byte StatusOutputFull = 0x01;
    public const byte StatusInputFull = 0x02;
    public const byte StatusSystemFlag = 0x04;
    public const byte StatusLastWriteCommand = 0x08;
    public const byte StatusNotInhibited = 0x10;
    public const byte StatusAuxData = 0x20;

    public const byte CommandByteKbdInterrupt = 0x01;
    public const byte CommandByteAuxInterrupt = 0x02;
    public const byte CommandByteSystemFlag = 0x04;
    public const byte CommandByteKbdDisabled = 0x10;
    public const byte CommandByteAuxDisabled = 0x20;
    public const byte CommandByteTranslate = 0x40;

    public const byte DefaultCommandByte = CommandByteSystemFlag | CommandByteTranslate; // 0x44
    /// <summary>Output port at power-on: bit 0 reset line inactive (high), bit 1 A20 enabled.</summary>
    public const byte DefaultOutputPort = 0x03;

    public const int MaxPendingOutput = 16;

    private readonly byte[] _ram = new byte[32];
    private readonly Queue<(byte Value, bool Aux)> _output = new();
    private byte? _pendingCommand;
    private bool _lastWriteWasCommand;
    private byte _lastData;

    public I8042Controller() => _ram[0] = DefaultCommandByte;

    public byte CommandByte => _ram[0];
    public byte OutputPort { get; private set; } = DefaultOutputPort;
    public bool A20Enabled => (OutputPort & 0x02) != 0;
    public int PendingOutput => _output.Count;

    public byte ReadStatus()
    {
        byte s = StatusNotInhibited;
        if (_output.Count > 0)
        {
            s |= StatusOutputFull;
            if (_output.Peek().Aux) s |= StatusAuxData;
        }
        if ((CommandByte & CommandByteSystemFlag) != 0) s |= StatusSystemFlag;
        if (_lastWriteWasCommand) s |= StatusLastWriteCommand;
        return s;
    }

    public byte ReadData()
    {
        if (_output.Count > 0) _lastData = _output.Dequeue().Value;
        return _lastData;
    }

    /// <summary>A write to the command port (0x64). A new command cancels one still waiting for its data byte.</summary>
    public I8042Effect WriteCommand(byte command)
    {
        _lastWriteWasCommand = true;
        _pendingCommand = null;
        switch (command)
        {
            case >= 0x20 and <= 0x3f:
                Reply(_ram[command - 0x20]);
                break;
            case >= 0x60 and <= 0x7f:
            case 0xd1 or 0xd2 or 0xd3 or 0xd4:
                _pendingCommand = command;
                break;
            case 0xa7: _ram[0] |= CommandByteAuxDisabled; break;
            case 0xa8: _ram[0] &= unchecked((byte)~CommandByteAuxDisabled); break;
            case 0xad: _ram[0] |= CommandByteKbdDisabled; break;
            case 0xae: _ram[0] &= unchecked((byte)~CommandByteKbdDisabled); break;
            case 0xa9 or 0xab: Reply(0x00); break;
            case 0xaa: Reply(0x55); break;
            case 0xd0: Reply(OutputPort); break;
            case 0xdd: OutputPort &= unchecked((byte)~0x02); break;
            case 0xdf: OutputPort |= 0x02; break;
            case >= 0xf0:
                // Pulse low the output-port bits 0-3 that are 0 in the command; bit 0 is the CPU reset line.
                if ((command & 0x01) == 0) return I8042Effect.ResetPulsed;
                break;
        }
        return I8042Effect.None;
    }

    /// <summary>A write to the data port (0x60): the parameter of a waiting controller command, else a byte for the keyboard.</summary>
    public I8042Effect WriteData(byte value)
    {
        _lastWriteWasCommand = false;
        var command = _pendingCommand;
        _pendingCommand = null;
        switch (command)
        {
            case >= 0x60 and <= 0x7f:
                _ram[command.Value - 0x60] = value;
                break;
            case 0xd1:
                OutputPort = value;
                if ((value & 0x01) == 0) return I8042Effect.ResetPulsed;
                break;
            case 0xd2: Reply(value); break;
            case 0xd3: Reply(value, aux: true); break;
            case 0xd4: break; // to the aux device: none attached
            default: break;   // to the keyboard: none attached
        }
        return I8042Effect.None;
    }

    /// <summary>Replies are queued (a guest may issue several commands before reading); a guest that never reads
    /// cannot grow the queue past <see cref="MaxPendingOutput"/>: further replies are dropped.</summary>
    private void Reply(byte value, bool aux = false)
    {
        if (_output.Count < MaxPendingOutput) _output.Enqueue((value, aux));
    }

    public I8042State Save() =>
        new(_ram.ToArray(), _output.Select(o => new I8042Output(o.Value, o.Aux)).ToArray(), _pendingCommand, _lastWriteWasCommand, _lastData, OutputPort);

    /// <summary>Takes a saved state, after checking every field (a <see cref="DeviceStateException"/> names the one that cannot be).</summary>
    public void Restore(I8042State state)
    {
        if (state.Ram.Length != _ram.Length)
            throw Invalid("ram", $"{state.Ram.Length} bytes, the controller has {_ram.Length}");
        if (state.Output.Length > MaxPendingOutput)
            throw Invalid("output", $"{state.Output.Length} bytes, more than the buffer holds ({MaxPendingOutput})");
        if (state.Output.Any(o => o is null))
            throw Invalid("output", "an entry is null");
        if (state.PendingCommand is { } c && c is not (>= 0x60 and <= 0x7f or 0xd1 or 0xd2 or 0xd3 or 0xd4))
            throw Invalid("pendingCommand", $"0x{c:x2} is not a command that waits for a data byte");
        state.Ram.CopyTo(_ram, 0);
        _output.Clear();
        foreach (var o in state.Output) _output.Enqueue((o.Value, o.Aux));
        _pendingCommand = state.PendingCommand;
        _lastWriteWasCommand = state.LastWriteWasCommand;
        _lastData = state.LastData;
        OutputPort = state.OutputPort;
    }

    private static DeviceStateException Invalid(string field, string problem) => new($"i8042 state: {field}: {problem}");
}

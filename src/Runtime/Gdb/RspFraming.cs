using System.Text;

namespace KvmActors.Gdb;

/// <summary>Something the decoder recognised in the byte stream from gdb.</summary>
public abstract record RspEvent;

/// <summary>A packet whose checksum matched; <see cref="Data"/> is RLE-expanded and unescaped.</summary>
public sealed record RspPacket(byte[] Data) : RspEvent
{
    public string Text => Encoding.Latin1.GetString(Data);
    public override string ToString() => $"RspPacket({Text})";
}

/// <summary>'+': the peer received our last packet.</summary>
public sealed record RspAck : RspEvent
{
    public static readonly RspAck Instance = new();
}

/// <summary>'-': the peer wants our last packet again.</summary>
public sealed record RspNak : RspEvent
{
    public static readonly RspNak Instance = new();
}

/// <summary>0x03 outside a packet: gdb's Ctrl-C.</summary>
public sealed record RspInterrupt : RspEvent
{
    public static readonly RspInterrupt Instance = new();
}

public enum RspRejectReason { BadChecksum, TooLong, Malformed }

/// <summary>A framed packet that was dropped; in ack mode the receiver answers it with '-'.</summary>
public sealed record RspRejected(RspRejectReason Reason) : RspEvent;

/// <summary>
/// Incremental decoder for the byte stream gdb sends: feed it whatever a read returned, in any
/// split, and it yields packets, acks and interrupts in order. Memory is bounded by
/// <see cref="MaxPacketBytes"/> whatever the peer sends, both before and after RLE expansion.
/// </summary>
public sealed class RspDecoder
{
    public const int DefaultMaxPacketBytes = 64 * 1024;

    private enum State { Idle, Body, Check1, Check2 }

    private readonly byte[] _raw;
    private int _rawLength;
    private bool _overflow;
    private byte _sum;
    private int _check;
    private State _state;

    public RspDecoder(int maxPacketBytes = DefaultMaxPacketBytes)
    {
        if (maxPacketBytes < 16) throw new ArgumentOutOfRangeException(nameof(maxPacketBytes));
        MaxPacketBytes = maxPacketBytes;
        _raw = new byte[maxPacketBytes];
    }

    public int MaxPacketBytes { get; }

    public IReadOnlyList<RspEvent> Feed(ReadOnlySpan<byte> bytes)
    {
        var events = new List<RspEvent>();
        foreach (var b in bytes) Step(b, events);
        return events;
    }

    private void Step(byte b, List<RspEvent> events)
    {
        switch (_state)
        {
            case State.Idle:
                switch (b)
                {
                    case (byte)'$': StartPacket(); break;
                    case (byte)'+': events.Add(RspAck.Instance); break;
                    case (byte)'-': events.Add(RspNak.Instance); break;
                    case 0x03: events.Add(RspInterrupt.Instance); break;
                    // Anything else between packets is line noise; gdb itself ignores it too.
                }
                break;
            case State.Body:
                if (b == (byte)'#') { _state = State.Check1; break; }
                // '$' can never be inside a packet (it is always escaped), so it means the previous
                // packet was cut off: resynchronise on the new one.
                if (b == (byte)'$') { StartPacket(); break; }
                _sum += b;
                if (_rawLength < _raw.Length) _raw[_rawLength++] = b;
                else _overflow = true; // keep consuming up to '#' but store nothing more
                break;
            case State.Check1:
                _check = HexValue(b) << 4;
                _state = State.Check2;
                break;
            case State.Check2:
                _check |= HexValue(b);
                _state = State.Idle;
                events.Add(Finish());
                break;
        }
    }

    private void StartPacket()
    {
        _state = State.Body;
        _rawLength = 0;
        _overflow = false;
        _sum = 0;
    }

    private RspEvent Finish()
    {
        // A non-hex digit makes _check negative, which never equals a byte sum.
        if (_check != _sum) return new RspRejected(RspRejectReason.BadChecksum);
        if (_overflow) return new RspRejected(RspRejectReason.TooLong);
        // gdb's own order: run-length expansion is a framing matter and comes first; '}' escapes
        // are then undone on the expanded bytes.
        var expanded = new List<byte>(_rawLength);
        for (var i = 0; i < _rawLength; i++)
        {
            var c = _raw[i];
            if (c != (byte)'*') { expanded.Add(c); continue; }
            if (expanded.Count == 0 || i + 1 >= _rawLength) return new RspRejected(RspRejectReason.Malformed);
            var count = _raw[++i];
            if (count < 32 || count > 126) return new RspRejected(RspRejectReason.Malformed);
            var repeat = count - 29;
            if (expanded.Count + repeat > MaxPacketBytes) return new RspRejected(RspRejectReason.TooLong);
            var prev = expanded[^1];
            for (var r = 0; r < repeat; r++) expanded.Add(prev);
        }
        var data = new List<byte>(expanded.Count);
        for (var i = 0; i < expanded.Count; i++)
        {
            var c = expanded[i];
            if (c == (byte)'}')
            {
                if (i + 1 >= expanded.Count) return new RspRejected(RspRejectReason.Malformed);
                data.Add((byte)(expanded[++i] ^ 0x20));
            }
            else data.Add(c);
        }
        return new RspPacket(data.ToArray());
    }

    private static int HexValue(byte b) => b switch
    {
        >= (byte)'0' and <= (byte)'9' => b - '0',
        >= (byte)'a' and <= (byte)'f' => b - 'a' + 10,
        >= (byte)'A' and <= (byte)'F' => b - 'A' + 10,
        _ => -1024,
    };
}

/// <summary>Frames outgoing packets: escape, optional run-length encoding, checksum.</summary>
public static class RspEncoder
{
    /// <summary>
    /// Frames <paramref name="payload"/> as <c>$data#cs</c>. '$', '#', '}' and '*' are escaped as
    /// '}' + (byte ^ 0x20); gdb undoes that for binary replies (qXfer), and the other replies we
    /// send are hex or plain words that never contain those bytes. With <paramref name="rle"/>,
    /// runs of 4 or more identical bytes are sent as byte '*' count, over the escaped bytes
    /// (gdb expands runs before unescaping).
    /// </summary>
    public static byte[] Frame(ReadOnlySpan<byte> payload, bool rle = false)
    {
        var escaped = new List<byte>(payload.Length + 8);
        foreach (var b in payload)
        {
            if (b is (byte)'$' or (byte)'#' or (byte)'}' or (byte)'*')
            {
                escaped.Add((byte)'}');
                escaped.Add((byte)(b ^ 0x20));
            }
            else escaped.Add(b);
        }
        var body = rle ? RunLengthEncode(escaped) : escaped;
        var frame = new byte[body.Count + 4];
        frame[0] = (byte)'$';
        byte sum = 0;
        for (var i = 0; i < body.Count; i++)
        {
            frame[i + 1] = body[i];
            sum += body[i];
        }
        frame[^3] = (byte)'#';
        frame[^2] = HexDigit(sum >> 4);
        frame[^1] = HexDigit(sum & 0xf);
        return frame;
    }

    public static byte[] Frame(string payload, bool rle = false) => Frame(Encoding.Latin1.GetBytes(payload), rle);

    /// <summary>The largest number of extra repeats one '*' can say: count byte '~' (126) - 29.</summary>
    private const int MaxRepeat = 126 - 29;

    private static List<byte> RunLengthEncode(List<byte> input)
    {
        var output = new List<byte>(input.Count);
        var i = 0;
        while (i < input.Count)
        {
            var c = input[i];
            var run = 1;
            while (i + run < input.Count && input[i + run] == c) run++;
            output.Add(c);
            var left = run - 1; // repeats still to say after the literal byte
            while (left > 0)
            {
                var n = SafeRepeat(Math.Min(left, MaxRepeat));
                if (n < 3)
                {
                    // Three bytes ("c*x") would not beat writing the bytes out.
                    for (var k = 0; k < left; k++) output.Add(c);
                    break;
                }
                output.Add((byte)'*');
                output.Add((byte)(n + 29));
                left -= n;
                if (left > 0)
                {
                    // The next '*' needs a literal byte before it again.
                    output.Add(c);
                    left--;
                }
            }
            i += run;
        }
        return output;
    }

    /// <summary>
    /// Lowers a repeat count so that its count byte (n + 29) is not '#' or '$' (they would end or
    /// restart the frame, as the protocol documents) nor '+' or '-' (ack bytes, which a peer
    /// resynchronising could misread).
    /// </summary>
    private static int SafeRepeat(int n)
    {
        while (n >= 3 && (n + 29) is '#' or '$' or '+' or '-') n--;
        return n;
    }

    private static byte HexDigit(int v) => (byte)"0123456789abcdef"[v];
}

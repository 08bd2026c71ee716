using System.Globalization;
using System.Text;

namespace KvmActors.Gdb;

/// <summary>A feature from qSupported: <c>name+</c>, <c>name-</c>, <c>name?</c> or <c>name=value</c>.</summary>
public sealed record GdbFeature(string Name, char State, string? Value = null)
{
    public bool Supported => State == '+' || (State == '=' && Value is not null);
}

public enum GdbResumeKind { Continue, Step, Stop }

/// <summary>
/// One vCont action. <see cref="ThreadId"/> -1 means every thread; an action applies to a thread
/// only if no action to its left already did (see <see cref="GdbResume.ActionFor"/>).
/// </summary>
public sealed record GdbResumeAction(GdbResumeKind Kind, int ThreadId = -1, ulong? Address = null, int? Signal = null);

public static class GdbResume
{
    /// <summary>What <paramref name="threadId"/> should do: the leftmost matching action, or null (stay stopped).</summary>
    public static GdbResumeAction? ActionFor(IReadOnlyList<GdbResumeAction> actions, int threadId)
    {
        foreach (var a in actions)
            if (a.ThreadId == -1 || a.ThreadId == threadId) return a;
        return null;
    }
}

/// <summary>Z/z type: 0 software, 1 hardware, 2 write, 3 read, 4 access watchpoint.</summary>
public enum GdbBreakpointType { Software = 0, Hardware = 1, WriteWatch = 2, ReadWatch = 3, AccessWatch = 4 }

public abstract record GdbCommand;

public sealed record QuerySupported(IReadOnlyList<GdbFeature> Features) : GdbCommand
{
    public GdbFeature? Find(string name) => Features.FirstOrDefault(f => f.Name == name);
}
public sealed record QueryHaltReason : GdbCommand;
public sealed record ReadAllRegisters : GdbCommand;
/// <summary>G: the bytes in g layout ('xx' pairs, which mean "unavailable", read as 0).</summary>
public sealed record WriteAllRegisters(byte[] Data) : GdbCommand;
public sealed record ReadRegister(int Number) : GdbCommand;
public sealed record WriteRegister(int Number, byte[] Value) : GdbCommand;
public sealed record ReadMemory(ulong Address, int Length) : GdbCommand;
/// <summary>M (hex data) and X (binary data) both parse to this; <see cref="Binary"/> says which.</summary>
public sealed record WriteMemory(ulong Address, byte[] Data, bool Binary) : GdbCommand;
public sealed record Continue(ulong? Address) : GdbCommand;
public sealed record Step(ulong? Address) : GdbCommand;
public sealed record QueryVCont : GdbCommand;
public sealed record VCont(IReadOnlyList<GdbResumeAction> Actions) : GdbCommand;
public sealed record InsertBreakpoint(GdbBreakpointType Type, ulong Address, int Kind) : GdbCommand;
public sealed record RemoveBreakpoint(GdbBreakpointType Type, ulong Address, int Kind) : GdbCommand;
/// <summary>H op tid: op 'g' selects the thread for register/memory packets, 'c' for c/s. 0 = any, -1 = all.</summary>
public sealed record SetThread(char Operation, int ThreadId) : GdbCommand;
public sealed record ThreadAlive(int ThreadId) : GdbCommand;
public sealed record ThreadInfoFirst : GdbCommand;
public sealed record ThreadInfoNext : GdbCommand;
public sealed record QueryCurrentThread : GdbCommand;
public sealed record QueryAttached(int? ProcessId) : GdbCommand;
public sealed record ReadFeatures(string Annex, int Offset, int Length) : GdbCommand;
public sealed record QueryThreadExtraInfo(int ThreadId) : GdbCommand;
public sealed record StartNoAckMode : GdbCommand;
public sealed record Detach(int? ProcessId) : GdbCommand;
public sealed record Kill : GdbCommand;
public sealed record VKill(int? ProcessId) : GdbCommand;
public sealed record MustReplyEmpty : GdbCommand;
/// <summary>A packet we do not implement; the protocol's answer is an empty reply.</summary>
public sealed record UnknownCommand(string Text) : GdbCommand;
/// <summary>A packet we implement but whose arguments did not parse; answered with an error.</summary>
public sealed record MalformedCommand(string Text) : GdbCommand;

/// <summary>Turns a packet's data into a <see cref="GdbCommand"/>. Never throws on hostile input.</summary>
public static class GdbCommandParser
{
    public static GdbCommand Parse(ReadOnlySpan<byte> data)
    {
        var text = Encoding.Latin1.GetString(data);
        try
        {
            return ParseText(text, data) ?? new MalformedCommand(text);
        }
        catch (FormatException) { return new MalformedCommand(text); }
        catch (OverflowException) { return new MalformedCommand(text); }
    }

    public static GdbCommand Parse(string text) => Parse(Encoding.Latin1.GetBytes(text));

    private static GdbCommand? ParseText(string s, ReadOnlySpan<byte> raw)
    {
        if (s.Length == 0) return new UnknownCommand(s);
        switch (s[0])
        {
            case '?': return s.Length == 1 ? new QueryHaltReason() : new UnknownCommand(s);
            case 'g': return s.Length == 1 ? new ReadAllRegisters() : new UnknownCommand(s);
            case 'G': return new WriteAllRegisters(Hex.Decode(s.AsSpan(1), allowUnavailable: true));
            case 'p': return new ReadRegister(checked((int)Hex.ParseULong(s.AsSpan(1))));
            case 'P':
            {
                var eq = s.IndexOf('=');
                if (eq < 0) return null;
                return new WriteRegister(checked((int)Hex.ParseULong(s.AsSpan(1, eq - 1))), Hex.Decode(s.AsSpan(eq + 1), allowUnavailable: true));
            }
            case 'm':
            {
                var (addr, len) = AddrLen(s.AsSpan(1));
                return new ReadMemory(addr, len);
            }
            case 'M':
            {
                var colon = s.IndexOf(':');
                if (colon < 0) return null;
                var (addr, len) = AddrLen(s.AsSpan(1, colon - 1));
                var bytes = Hex.Decode(s.AsSpan(colon + 1));
                return bytes.Length == len ? new WriteMemory(addr, bytes, Binary: false) : null;
            }
            case 'X':
            {
                var colon = s.IndexOf(':');
                if (colon < 0) return null;
                var (addr, len) = AddrLen(s.AsSpan(1, colon - 1));
                // The framing layer already unescaped the binary data, so it is taken as bytes.
                var bytes = raw[(colon + 1)..].ToArray();
                return bytes.Length == len ? new WriteMemory(addr, bytes, Binary: true) : null;
            }
            case 'c': return new Continue(s.Length > 1 ? Hex.ParseULong(s.AsSpan(1)) : null);
            case 's': return new Step(s.Length > 1 ? Hex.ParseULong(s.AsSpan(1)) : null);
            case 'Z':
            case 'z':
            {
                var parts = s[1..].Split(',');
                // Conditions and commands after ';' (Z0,addr,kind;X...) are not supported; the kind is taken alone.
                if (parts.Length < 3) return null;
                var type = Hex.ParseULong(parts[0]);
                if (type > 4) return new UnknownCommand(s);
                var addr = Hex.ParseULong(parts[1]);
                var kind = checked((int)Hex.ParseULong(parts[2].Split(';')[0]));
                return s[0] == 'Z'
                    ? new InsertBreakpoint((GdbBreakpointType)type, addr, kind)
                    : new RemoveBreakpoint((GdbBreakpointType)type, addr, kind);
            }
            case 'H':
                if (s.Length < 3 || (s[1] != 'g' && s[1] != 'c')) return null;
                return new SetThread(s[1], ParseThreadId(s.AsSpan(2)));
            case 'T': return new ThreadAlive(ParseThreadId(s.AsSpan(1)));
            case 'D':
                if (s.Length == 1) return new Detach(null);
                return s[1] == ';' ? new Detach(checked((int)Hex.ParseULong(s.AsSpan(2)))) : null;
            case 'k': return new Kill();
            case 'q': return ParseQuery(s);
            case 'Q': return s == "QStartNoAckMode" ? new StartNoAckMode() : new UnknownCommand(s);
            case 'v': return ParseV(s);
            default: return new UnknownCommand(s);
        }
    }

    private static GdbCommand? ParseQuery(string s)
    {
        if (s == "qSupported" || s.StartsWith("qSupported:", StringComparison.Ordinal))
        {
            var features = new List<GdbFeature>();
            if (s.Length > "qSupported:".Length)
                foreach (var f in s["qSupported:".Length..].Split(';', StringSplitOptions.RemoveEmptyEntries))
                {
                    var eq = f.IndexOf('=');
                    if (eq >= 0) features.Add(new GdbFeature(f[..eq], '=', f[(eq + 1)..]));
                    else if (f[^1] is '+' or '-' or '?') features.Add(new GdbFeature(f[..^1], f[^1]));
                    else return null;
                }
            return new QuerySupported(features);
        }
        switch (s)
        {
            case "qfThreadInfo": return new ThreadInfoFirst();
            case "qsThreadInfo": return new ThreadInfoNext();
            case "qC": return new QueryCurrentThread();
            case "qAttached": return new QueryAttached(null);
        }
        if (s.StartsWith("qAttached:", StringComparison.Ordinal))
            return new QueryAttached(checked((int)Hex.ParseULong(s.AsSpan("qAttached:".Length))));
        if (s.StartsWith("qThreadExtraInfo,", StringComparison.Ordinal))
            return new QueryThreadExtraInfo(ParseThreadId(s.AsSpan("qThreadExtraInfo,".Length)));
        const string xfer = "qXfer:features:read:";
        if (s.StartsWith(xfer, StringComparison.Ordinal))
        {
            var rest = s[xfer.Length..];
            var colon = rest.LastIndexOf(':');
            if (colon < 0) return null;
            var (offset, length) = AddrLen(rest.AsSpan(colon + 1));
            return new ReadFeatures(rest[..colon], checked((int)offset), length);
        }
        return new UnknownCommand(s);
    }

    private static GdbCommand? ParseV(string s)
    {
        if (s == "vCont?") return new QueryVCont();
        if (s == "vMustReplyEmpty") return new MustReplyEmpty();
        if (s == "vKill") return new VKill(null);
        if (s.StartsWith("vKill;", StringComparison.Ordinal)) return new VKill(checked((int)Hex.ParseULong(s.AsSpan(6))));
        if (s.StartsWith("vCont;", StringComparison.Ordinal))
        {
            var actions = new List<GdbResumeAction>();
            foreach (var part in s[6..].Split(';'))
            {
                if (part.Length == 0) return null;
                var colon = part.IndexOf(':');
                var action = colon < 0 ? part : part[..colon];
                var tid = colon < 0 ? -1 : ParseThreadId(part.AsSpan(colon + 1));
                actions.Add(action[0] switch
                {
                    'c' when action.Length == 1 => new GdbResumeAction(GdbResumeKind.Continue, tid),
                    's' when action.Length == 1 => new GdbResumeAction(GdbResumeKind.Step, tid),
                    't' when action.Length == 1 => new GdbResumeAction(GdbResumeKind.Stop, tid),
                    // A VM has no signals to deliver; C/S carry one, which is recorded and otherwise ignored.
                    'C' when action.Length == 3 => new GdbResumeAction(GdbResumeKind.Continue, tid, null, (int)Hex.ParseULong(action.AsSpan(1))),
                    'S' when action.Length == 3 => new GdbResumeAction(GdbResumeKind.Step, tid, null, (int)Hex.ParseULong(action.AsSpan(1))),
                    _ => throw new FormatException($"vCont action {part}"),
                });
            }
            return new VCont(actions);
        }
        return new UnknownCommand(s);
    }

    /// <summary>A plain hex thread id, or -1 ("all threads").</summary>
    public static int ParseThreadId(ReadOnlySpan<char> s)
    {
        if (s.SequenceEqual("-1")) return -1;
        var v = Hex.ParseULong(s);
        if (v > int.MaxValue) throw new OverflowException();
        return (int)v;
    }

    /// <summary>"addr,len" in hex; lengths are bounded to an int.</summary>
    private static (ulong Address, int Length) AddrLen(ReadOnlySpan<char> s)
    {
        var comma = s.IndexOf(',');
        if (comma < 0) throw new FormatException("expected addr,length");
        var len = Hex.ParseULong(s[(comma + 1)..]);
        if (len > int.MaxValue) throw new OverflowException();
        return (Hex.ParseULong(s[..comma]), (int)len);
    }
}

/// <summary>Hex helpers in the protocol's spelling (lower case out, either case in).</summary>
public static class Hex
{
    public static ulong ParseULong(ReadOnlySpan<char> s)
    {
        if (s.Length == 0 || s.Length > 16) throw new FormatException("bad hex number");
        return ulong.Parse(s, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture);
    }

    /// <param name="allowUnavailable">Accept "xx" (gdb's "unavailable") as a zero byte.</param>
    public static byte[] Decode(ReadOnlySpan<char> s, bool allowUnavailable = false)
    {
        if (s.Length % 2 != 0) throw new FormatException("odd hex length");
        var bytes = new byte[s.Length / 2];
        for (var i = 0; i < bytes.Length; i++)
        {
            var hi = s[2 * i];
            var lo = s[2 * i + 1];
            if (allowUnavailable && hi == 'x' && lo == 'x') continue;
            bytes[i] = (byte)(Digit(hi) << 4 | Digit(lo));
        }
        return bytes;
    }

    public static string Encode(ReadOnlySpan<byte> bytes) => Convert.ToHexStringLower(bytes);

    private static int Digit(char c) => c switch
    {
        >= '0' and <= '9' => c - '0',
        >= 'a' and <= 'f' => c - 'a' + 10,
        >= 'A' and <= 'F' => c - 'A' + 10,
        _ => throw new FormatException("bad hex digit"),
    };
}

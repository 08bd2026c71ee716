using System.Text;

namespace KvmActors.Gdb;

public enum GdbStopKind { Signal, SoftwareBreakpoint, HardwareBreakpoint, WriteWatchpoint, ReadWatchpoint, AccessWatchpoint, Exited, Terminated }

/// <summary>
/// Why the target stopped. <see cref="ThreadId"/> is the thread that stopped (vCPU index + 1);
/// <see cref="Signal"/> is the Unix signal gdb is told (5 SIGTRAP for steps and breakpoints, 2
/// SIGINT for Ctrl-C); <see cref="Value"/> is the data address for watchpoints, the exit code for
/// <see cref="GdbStopKind.Exited"/>.
/// </summary>
public sealed record GdbStopEvent(GdbStopKind Kind, int ThreadId, int Signal = GdbSignals.Trap, ulong Value = 0)
{
    public static GdbStopEvent Stepped(int threadId) => new(GdbStopKind.Signal, threadId);
    public static GdbStopEvent Interrupted(int threadId) => new(GdbStopKind.Signal, threadId, GdbSignals.Int);
    public static GdbStopEvent SoftwareBreakpoint(int threadId) => new(GdbStopKind.SoftwareBreakpoint, threadId);
    public static GdbStopEvent HardwareBreakpoint(int threadId) => new(GdbStopKind.HardwareBreakpoint, threadId);
    public static GdbStopEvent Watchpoint(int threadId, GdbBreakpointType type, ulong dataAddress) => new(type switch
    {
        GdbBreakpointType.WriteWatch => GdbStopKind.WriteWatchpoint,
        GdbBreakpointType.ReadWatch => GdbStopKind.ReadWatchpoint,
        GdbBreakpointType.AccessWatch => GdbStopKind.AccessWatchpoint,
        _ => throw new ArgumentOutOfRangeException(nameof(type)),
    }, threadId, GdbSignals.Trap, dataAddress);
    public static GdbStopEvent Exited(int exitCode) => new(GdbStopKind.Exited, 0, 0, (ulong)(exitCode & 0xff));
    public static GdbStopEvent Terminated(int signal) => new(GdbStopKind.Terminated, 0, signal);
}

public static class GdbSignals
{
    public const int Int = 2;
    public const int Trap = 5;
    public const int Kill = 9;
}

/// <summary>Reply payloads (unframed) in the protocol's spelling.</summary>
public static class GdbReplies
{
    public const string Ok = "OK";
    public const string Empty = "";

    /// <summary>"Exx". gdb shows the number only; the codes carry no standard meaning.</summary>
    public static string Error(byte code) => $"E{code:x2}";

    public static string Signal(int signal) => $"S{signal & 0xff:x2}";

    /// <param name="reportSwBreak">Only say "swbreak" to a gdb that announced swbreak+; an older gdb
    /// would not know the PC is already at the breakpoint.</param>
    /// <param name="reportHwBreak">Likewise for "hwbreak".</param>
    public static string Stop(GdbStopEvent stop, bool reportSwBreak = true, bool reportHwBreak = true)
    {
        switch (stop.Kind)
        {
            case GdbStopKind.Exited: return $"W{stop.Value & 0xff:x2}";
            case GdbStopKind.Terminated: return $"X{stop.Signal & 0xff:x2}";
        }
        var sb = new StringBuilder();
        sb.Append($"T{stop.Signal & 0xff:x2}");
        switch (stop.Kind)
        {
            case GdbStopKind.SoftwareBreakpoint when reportSwBreak: sb.Append("swbreak:;"); break;
            case GdbStopKind.HardwareBreakpoint when reportHwBreak: sb.Append("hwbreak:;"); break;
            case GdbStopKind.WriteWatchpoint: sb.Append($"watch:{stop.Value:x};"); break;
            case GdbStopKind.ReadWatchpoint: sb.Append($"rwatch:{stop.Value:x};"); break;
            case GdbStopKind.AccessWatchpoint: sb.Append($"awatch:{stop.Value:x};"); break;
        }
        sb.Append($"thread:{stop.ThreadId:x};");
        return sb.ToString();
    }

    /// <summary>qfThreadInfo/qsThreadInfo: "m1,2,3" for a batch, "l" when there are no more.</summary>
    public static string ThreadList(IEnumerable<int> threadIds)
    {
        var ids = threadIds.ToList();
        return ids.Count == 0 ? "l" : "m" + string.Join(',', ids.Select(t => t.ToString("x")));
    }

    public const string EndOfList = "l";

    /// <summary>
    /// One qXfer read reply: 'm' + data when more follows, 'l' + data for the last piece (or 'l'
    /// alone past the end). The data is raw bytes; <see cref="RspEncoder"/> escapes them.
    /// </summary>
    public static byte[] XferChunk(ReadOnlySpan<byte> document, int offset, int length)
    {
        if (offset < 0 || length < 0) throw new ArgumentOutOfRangeException(nameof(offset));
        if (offset >= document.Length) return "l"u8.ToArray();
        var n = Math.Min(length, document.Length - offset);
        var reply = new byte[n + 1];
        reply[0] = offset + n < document.Length ? (byte)'m' : (byte)'l';
        document.Slice(offset, n).CopyTo(reply.AsSpan(1));
        return reply;
    }

    /// <summary>qThreadExtraInfo answers hex-encoded text.</summary>
    public static string HexText(string text) => Hex.Encode(Encoding.UTF8.GetBytes(text));
}

using System.Threading.Channels;

namespace KvmActors.Gdb;

/// <param name="Mode">Which register layout and target description gdb gets, for the whole connection.</param>
/// <param name="CompressReplies">Run-length encode replies (g replies are mostly zeros and 'x's).</param>
/// <param name="MaxPacketBytes">The largest packet accepted from gdb; larger ones are refused with '-'.</param>
public sealed record GdbSessionOptions(
    X86Mode Mode = X86Mode.Long64,
    bool CompressReplies = true,
    int MaxPacketBytes = RspDecoder.DefaultMaxPacketBytes);

/// <summary>
/// One gdb connection in all-stop mode: reads packets from <paramref name="stream"/>, answers them
/// from <see cref="IGdbTarget"/>, and returns when gdb detaches, kills or disconnects. The caller
/// owns (and closes) the stream. If gdb disconnects without 'D' or 'k', the target is detached so a
/// vanished debugger does not leave the VM stopped.
/// </summary>
public sealed class GdbSession(Stream stream, IGdbTarget target, GdbSessionOptions? options = null)
{
    /// <summary>Packets gdb may send while the target runs, kept until it stops; more are dropped
    /// (all-stop gdb sends none, so only a misbehaving client reaches this).</summary>
    private const int MaxDeferred = 32;

    private readonly GdbSessionOptions _options = options ?? new GdbSessionOptions();
    private readonly X86RegisterLayout _layout = X86RegisterLayout.For((options ?? new GdbSessionOptions()).Mode);
    private readonly Queue<RspPacket> _deferred = new();
    private bool _ackMode = true;
    private byte[]? _lastFrame;
    private GdbStopEvent _lastStop = GdbStopEvent.Stepped(1);
    private int _gThread = 1;
    private int _cThread = -1;
    private bool _gdbKnowsSwBreak;
    private bool _gdbKnowsHwBreak;
    private Task<GdbStopEvent>? _running;
    private bool _ended;

    public X86RegisterLayout Layout => _layout;

    /// <summary>Largest packet we tell gdb it may send (it counts the data only).</summary>
    private int AdvertisedPacketSize => Math.Min(_options.MaxPacketBytes - 16, 0x4000);

    public async Task RunAsync(CancellationToken cancellationToken = default)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var ct = cts.Token;
        // Bounded, so a client that floods us is slowed by TCP instead of growing a queue.
        var events = Channel.CreateBounded<RspEvent>(new BoundedChannelOptions(64) { SingleReader = true, SingleWriter = true });
        var reader = ReadLoopAsync(events.Writer, ct);
        try
        {
            _lastStop = await target.AttachAsync(ct);
            _gThread = _lastStop.ThreadId > 0 ? _lastStop.ThreadId : await FirstThreadAsync(ct);
            Task<bool>? waitRead = null;
            while (!_ended)
            {
                waitRead ??= events.Reader.WaitToReadAsync(ct).AsTask();
                if (_running is not null && await Task.WhenAny(waitRead, _running) == _running)
                {
                    await OnStoppedAsync(ct);
                    continue;
                }
                if (!await waitRead)
                {
                    await target.DetachAsync(ct);
                    break;
                }
                waitRead = null;
                while (!_ended && events.Reader.TryRead(out var ev)) await HandleAsync(ev, ct);
            }
        }
        finally
        {
            // Not awaited: a stream that ignores cancellation only ends its read when the caller
            // closes it, which the caller does after we return. The loop swallows its own errors.
            await cts.CancelAsync();
            _ = reader;
        }
    }

    private async Task ReadLoopAsync(ChannelWriter<RspEvent> writer, CancellationToken ct)
    {
        var decoder = new RspDecoder(_options.MaxPacketBytes);
        var buffer = new byte[4096];
        try
        {
            while (true)
            {
                var n = await stream.ReadAsync(buffer, ct);
                if (n == 0) break;
                foreach (var ev in decoder.Feed(buffer.AsSpan(0, n))) await writer.WriteAsync(ev, ct);
            }
        }
        catch (OperationCanceledException) { }
        catch (IOException) { }
        catch (ObjectDisposedException) { }
        finally { writer.TryComplete(); }
    }

    private async Task HandleAsync(RspEvent ev, CancellationToken ct)
    {
        switch (ev)
        {
            case RspNak when _ackMode && _lastFrame is not null:
                await WriteAsync(_lastFrame, ct);
                break;
            case RspInterrupt when _running is not null:
                await target.InterruptAsync(ct);
                break;
            case RspRejected when _ackMode:
                await WriteAsync("-"u8.ToArray(), ct);
                break;
            case RspPacket packet:
                if (_ackMode) await WriteAsync("+"u8.ToArray(), ct);
                if (_running is not null)
                {
                    if (_deferred.Count < MaxDeferred) _deferred.Enqueue(packet);
                }
                else await DispatchAsync(packet, ct);
                break;
            // Acks, and Ctrl-C while already stopped (a race gdbserver ignores too), need nothing.
        }
    }

    private async Task OnStoppedAsync(CancellationToken ct)
    {
        var running = _running!;
        _running = null;
        GdbStopEvent stop;
        try { stop = await running; }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            await ReplyAsync(GdbReplies.Error(1), ct);
            return;
        }
        _lastStop = stop;
        // gdb now considers the stopped thread current, and so do we.
        if (stop.ThreadId > 0) _gThread = stop.ThreadId;
        await ReplyAsync(StopReply(stop), ct);
        while (_running is null && !_ended && _deferred.TryDequeue(out var packet)) await DispatchAsync(packet, ct);
    }

    private string StopReply(GdbStopEvent stop) => GdbReplies.Stop(stop, _gdbKnowsSwBreak, _gdbKnowsHwBreak);

    private async Task DispatchAsync(RspPacket packet, CancellationToken ct)
    {
        var command = GdbCommandParser.Parse(packet.Data);
        object? reply;
        try { reply = await ExecuteAsync(command, ct); }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // A target failure is the debugger's to see, not a reason to drop the connection.
            reply = GdbReplies.Error(1);
        }
        switch (reply)
        {
            case string s: await ReplyAsync(s, ct); break;
            case byte[] b: await ReplyAsync(b, ct); break;
        }
        if (command is StartNoAckMode) _ackMode = false; // only after the OK, which is still acked
    }

    /// <summary>The reply payload (string or bytes), or null when none is due now.</summary>
    private async Task<object?> ExecuteAsync(GdbCommand command, CancellationToken ct)
    {
        switch (command)
        {
            case QuerySupported q:
                _gdbKnowsSwBreak = q.Find("swbreak")?.Supported == true;
                _gdbKnowsHwBreak = q.Find("hwbreak")?.Supported == true;
                return $"PacketSize={AdvertisedPacketSize:x};qXfer:features:read+;QStartNoAckMode+;swbreak+;hwbreak+";
            case StartNoAckMode: return GdbReplies.Ok;
            case MustReplyEmpty: return GdbReplies.Empty;
            case QueryHaltReason: return StopReply(_lastStop);
            case ReadAllRegisters:
                return _layout.SerializeG(await target.ReadRegistersAsync(_gThread, ct));
            case WriteAllRegisters g:
            {
                var current = await target.ReadRegistersAsync(_gThread, ct);
                var regs = _layout.ParseG(g.Data, current);
                if (regs is null) return GdbReplies.Error(1);
                return await target.WriteRegistersAsync(_gThread, regs, ct) ? GdbReplies.Ok : GdbReplies.Error(1);
            }
            case ReadRegister p:
                return _layout.ReadRegister(p.Number, await target.ReadRegistersAsync(_gThread, ct)) ?? GdbReplies.Error(1);
            case WriteRegister p:
            {
                var current = await target.ReadRegistersAsync(_gThread, ct);
                var regs = _layout.WriteRegister(p.Number, p.Value, current);
                if (regs is null) return GdbReplies.Error(1);
                return await target.WriteRegistersAsync(_gThread, regs, ct) ? GdbReplies.Ok : GdbReplies.Error(1);
            }
            case ReadMemory m:
            {
                if (m.Length == 0) return GdbReplies.Empty;
                // A partial read is allowed by the protocol; it also caps what one packet makes us allocate.
                var bytes = await target.ReadMemoryAsync(_gThread, m.Address, Math.Min(m.Length, AdvertisedPacketSize / 2), ct);
                return bytes.Length == 0 ? GdbReplies.Error(1) : Hex.Encode(bytes);
            }
            case WriteMemory w:
                // "X addr,0:" is gdb's probe for X support.
                if (w.Data.Length == 0) return GdbReplies.Ok;
                return await target.WriteMemoryAsync(_gThread, w.Address, w.Data, ct) ? GdbReplies.Ok : GdbReplies.Error(1);
            case Continue c:
                if (c.Address is { } ca && !await SetPcAsync(await ResumeThreadAsync(ct), ca, ct)) return GdbReplies.Error(1);
                Start([new GdbResumeAction(GdbResumeKind.Continue)], ct);
                return null;
            case Step s:
            {
                // 's' steps the Hc thread only; the others stay stopped.
                var thread = await ResumeThreadAsync(ct);
                if (s.Address is { } sa && !await SetPcAsync(thread, sa, ct)) return GdbReplies.Error(1);
                Start([new GdbResumeAction(GdbResumeKind.Step, thread)], ct);
                return null;
            }
            case QueryVCont: return "vCont;c;C;s;S;t";
            case VCont v:
                Start(v.Actions, ct);
                return null;
            case InsertBreakpoint z:
                return BreakpointReply(await target.InsertBreakpointAsync(z.Type, z.Address, z.Kind, ct));
            case RemoveBreakpoint z:
                return BreakpointReply(await target.RemoveBreakpointAsync(z.Type, z.Address, z.Kind, ct));
            case SetThread h:
                return await SetThreadAsync(h, ct);
            case ThreadAlive t:
                return (await target.GetThreadsAsync(ct)).Contains(t.ThreadId) ? GdbReplies.Ok : GdbReplies.Error(1);
            case ThreadInfoFirst:
                return GdbReplies.ThreadList(await target.GetThreadsAsync(ct));
            case ThreadInfoNext: return GdbReplies.EndOfList;
            case QueryCurrentThread: return $"QC{_gThread:x}";
            // "1": we attached to something that was already running, so gdb's quit detaches.
            case QueryAttached: return "1";
            case ReadFeatures x:
                return x.Annex == "target.xml"
                    ? GdbReplies.XferChunk(_layout.TargetXmlBytes, x.Offset, Math.Min(x.Length, AdvertisedPacketSize))
                    : GdbReplies.Error(0);
            case QueryThreadExtraInfo e:
                return (await target.GetThreadsAsync(ct)).Contains(e.ThreadId)
                    ? GdbReplies.HexText(await target.GetThreadExtraInfoAsync(e.ThreadId, ct))
                    : GdbReplies.Error(1);
            case Detach:
                await target.DetachAsync(ct);
                _ended = true;
                return GdbReplies.Ok;
            case Kill:
                // 'k' has no reply; gdb expects the connection to go.
                await target.KillAsync(ct);
                _ended = true;
                return null;
            case VKill:
                await target.KillAsync(ct);
                _ended = true;
                return GdbReplies.Ok;
            case MalformedCommand: return GdbReplies.Error(1);
            default: return GdbReplies.Empty;
        }
    }

    private void Start(IReadOnlyList<GdbResumeAction> actions, CancellationToken ct) =>
        _running = target.ResumeAsync(actions, ct);

    private static string BreakpointReply(GdbBreakpointResult result) => result switch
    {
        GdbBreakpointResult.Ok => GdbReplies.Ok,
        GdbBreakpointResult.Unsupported => GdbReplies.Empty,
        _ => GdbReplies.Error(1),
    };

    private async Task<string> SetThreadAsync(SetThread h, CancellationToken ct)
    {
        var threads = await target.GetThreadsAsync(ct);
        if (h.ThreadId > 0 && !threads.Contains(h.ThreadId)) return GdbReplies.Error(1);
        if (h.Operation == 'c')
            _cThread = h.ThreadId; // 0 ("any") and -1 ("all") are resolved when resuming
        else if (h.ThreadId > 0)
            _gThread = h.ThreadId;
        // Hg0 / Hg-1 keep the current thread: registers are always some one thread's.
        return GdbReplies.Ok;
    }

    private async Task<int> ResumeThreadAsync(CancellationToken ct) => _cThread > 0 ? _cThread : _gThread > 0 ? _gThread : await FirstThreadAsync(ct);

    private async Task<int> FirstThreadAsync(CancellationToken ct)
    {
        var threads = await target.GetThreadsAsync(ct);
        return threads.Count > 0 ? threads[0] : 1;
    }

    private async Task<bool> SetPcAsync(int thread, ulong pc, CancellationToken ct)
    {
        var regs = await target.ReadRegistersAsync(thread, ct);
        return await target.WriteRegistersAsync(thread, regs with { Rip = pc }, ct);
    }

    private Task ReplyAsync(string payload, CancellationToken ct) =>
        ReplyAsync(System.Text.Encoding.Latin1.GetBytes(payload), ct);

    private async Task ReplyAsync(byte[] payload, CancellationToken ct)
    {
        var frame = RspEncoder.Frame(payload, _options.CompressReplies);
        _lastFrame = _ackMode ? frame : null;
        await WriteAsync(frame, ct);
    }

    private async Task WriteAsync(byte[] bytes, CancellationToken ct)
    {
        await stream.WriteAsync(bytes, ct);
        await stream.FlushAsync(ct);
    }
}

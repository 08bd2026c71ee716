using System.Collections.Concurrent;
using System.Collections.Immutable;
using System.Text;
using Akka.Actor;

namespace KvmActors.Sdk;

// Host input for devices (a UART's receiver), delivered with back-pressure:
//
//   device --RequestHostInput(max)--> HostInputReader --HostInputReceived(1..max bytes)--> device
//                                                      \-HostInputEnded(why)-------------> device
//
// The device asks only when it has room, and asks again only after the answer, so at most `max`
// bytes are in flight and the reader never reads ahead of demand. Bytes are never dropped: what the
// device cannot take yet stays with it (or, before delivery, in the source's buffer).

/// <summary>A device has room for up to <paramref name="Max"/> bytes of host input. One request at a time.</summary>
public sealed record RequestHostInput(int Max);

/// <summary>Host input arrived for a <see cref="RequestHostInput"/>: 1..Max bytes, in order.</summary>
public sealed record HostInputReceived(ImmutableArray<byte> Bytes);

/// <summary>The input has ended (end of file, <see cref="MemoryInput.Complete"/>, or a read error); nothing more will come.</summary>
public sealed record HostInputEnded(string Why);

/// <summary>A source of host input bytes.</summary>
public interface IHostInput
{
    /// <summary>
    /// Reads 1..buffer.Length bytes, waiting until some are available; 0 means the input has ended.
    /// Cancelling takes no bytes: whatever arrives later stays for the next read.
    /// </summary>
    ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken);
}

/// <summary>An input that buffers bytes given to it by a producer until a reader takes them.</summary>
public abstract class BufferedHostInput : IHostInput
{
    private readonly object _gate = new();
    private readonly Queue<byte> _bytes = new();
    private bool _ended;
    private TaskCompletionSource? _changed; // completed when bytes arrive or the input ends

    /// <summary>Bytes given but not yet read by a device.</summary>
    public int Pending { get { lock (_gate) return _bytes.Count; } }

    protected void Append(ReadOnlySpan<byte> bytes)
    {
        TaskCompletionSource? wake;
        lock (_gate)
        {
            if (_ended) throw new InvalidOperationException("input already completed");
            foreach (var b in bytes) _bytes.Enqueue(b);
            wake = _changed;
            _changed = null;
        }
        wake?.TrySetResult();
    }

    protected void End()
    {
        TaskCompletionSource? wake;
        lock (_gate)
        {
            _ended = true;
            wake = _changed;
            _changed = null;
        }
        wake?.TrySetResult();
    }

    /// <summary>A reader found the buffer empty and is about to wait (a source that reads on demand starts here).</summary>
    protected virtual void OnStarved() { }

    public async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken)
    {
        if (buffer.Length == 0) return 0;
        while (true)
        {
            Task wait;
            lock (_gate)
            {
                if (_bytes.Count > 0)
                {
                    int n = Math.Min(buffer.Length, _bytes.Count);
                    var span = buffer.Span;
                    for (int i = 0; i < n; i++) span[i] = _bytes.Dequeue();
                    return n;
                }
                if (_ended) return 0;
                _changed ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                wait = _changed.Task;
            }
            OnStarved();
            await wait.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
    }
}

/// <summary>Host input a test pushes bytes into (<c>input = "memory:NAME"</c>).</summary>
public sealed class MemoryInput : BufferedHostInput
{
    public void Push(ReadOnlySpan<byte> bytes) => Append(bytes);
    public void Push(string text) => Append(Encoding.Latin1.GetBytes(text));
    /// <summary>No more input: a reader gets the remaining bytes, then the end.</summary>
    public void Complete() => End();
}

/// <summary>
/// The process's standard input (<c>input = stdin</c>), shared by every device that names it.
/// A background thread reads only while some reader is waiting, so nothing is read ahead of demand
/// and no device actor ever blocks. When devices stop asking the thread parks; a read already blocked
/// in the OS cannot be cancelled, so its bytes, when they come, are kept for the next reader.
/// </summary>
public sealed class StdinInput : BufferedHostInput
{
    private static readonly Lazy<StdinInput> Instance = new(() => new StdinInput());
    public static StdinInput Shared => Instance.Value;

    private readonly SemaphoreSlim _demand = new(0, 1);
    private readonly object _startGate = new();
    private Thread? _thread;

    private StdinInput() { }

    protected override void OnStarved()
    {
        lock (_startGate)
        {
            _thread ??= StartThread();
            if (_demand.CurrentCount == 0) _demand.Release();
        }
    }

    private Thread StartThread()
    {
        var t = new Thread(ReadLoop) { IsBackground = true, Name = "stdin-reader" };
        t.Start();
        return t;
    }

    private void ReadLoop()
    {
        var buffer = new byte[4096];
        try
        {
            using var stdin = Console.OpenStandardInput();
            while (true)
            {
                _demand.Wait();
                if (Pending > 0) continue; // an earlier read already satisfied this demand
                int n = stdin.Read(buffer, 0, buffer.Length);
                if (n == 0) break;
                Append(buffer.AsSpan(0, n));
            }
        }
        catch (Exception)
        {
            // stdin closed or unreadable: the same as its end for the guest.
        }
        End();
    }
}

/// <summary>
/// Serves <see cref="RequestHostInput"/> from one <see cref="IHostInput"/>. Make it a child of the
/// device so it stops with it; stopping cancels the read in progress without losing bytes.
/// </summary>
public sealed class HostInputReader : UntypedActor
{
    private readonly IHostInput _input;
    private readonly CancellationTokenSource _stopping = new();
    private bool _reading;
    private string? _ended;

    public HostInputReader(IHostInput input) => _input = input;

    public static Props Props(IHostInput input) => Akka.Actor.Props.Create(() => new HostInputReader(input));

    private sealed record ReadFinished(byte[] Buffer, int Count, IActorRef ReplyTo);
    private sealed record ReadFailed(Exception Error, IActorRef ReplyTo);

    protected override void OnReceive(object message)
    {
        switch (message)
        {
            case RequestHostInput when _ended is not null:
                Sender.Tell(new HostInputEnded(_ended));
                break;
            case RequestHostInput request:
                if (_reading) break; // the read in progress answers; requests do not queue up
                _reading = true;
                var buffer = new byte[Math.Clamp(request.Max, 1, 4096)];
                var replyTo = Sender;
                _input.ReadAsync(buffer, _stopping.Token).AsTask().PipeTo(Self,
                    success: n => new ReadFinished(buffer, n, replyTo),
                    failure: e => new ReadFailed(e, replyTo));
                break;
            case ReadFinished done:
                _reading = false;
                if (done.Count == 0)
                {
                    _ended = "end of input";
                    done.ReplyTo.Tell(new HostInputEnded(_ended));
                }
                else
                {
                    done.ReplyTo.Tell(new HostInputReceived(ImmutableArray.Create(done.Buffer, 0, done.Count)));
                }
                break;
            case ReadFailed failed:
                _reading = false;
                if (failed.Error is OperationCanceledException || (failed.Error as AggregateException)?.InnerException is OperationCanceledException) break;
                _ended = $"input failed: {failed.Error.GetBaseException().Message}";
                failed.ReplyTo.Tell(new HostInputEnded(_ended));
                break;
            default:
                Unhandled(message);
                break;
        }
    }

    protected override void PostStop() => _stopping.Cancel();
}

public sealed partial class HostIo
{
    private readonly ConcurrentDictionary<string, MemoryInput> _memoryInputs = new();

    /// <summary>The in-memory input of this name (created if new), for <c>input = "memory:NAME"</c>.</summary>
    public MemoryInput MemoryInput(string name) => _memoryInputs.GetOrAdd(name, _ => new MemoryInput());

    /// <summary>Opens the input a device option names: <c>none</c> (null), <c>stdin</c> or <c>memory:NAME</c>.</summary>
    public IHostInput? OpenInput(string spec)
    {
        if (spec is "none" or "null") return null;
        if (spec == "stdin") return StdinInput.Shared;
        if (spec.StartsWith("memory:")) return MemoryInput(spec["memory:".Length..]);
        if (spec.StartsWith(AttachedIo.Prefix)) return Attached.Input(spec[AttachedIo.Prefix.Length..]);
        throw new ArgumentException($"unknown input '{spec}' (use none, stdin or memory:NAME)");
    }
}

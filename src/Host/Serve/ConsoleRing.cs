using KvmActors.Runtime.Devices;

namespace KvmActors.Host.Serve;

/// <summary>
/// A VM's COM1 output, kept in a bounded ring: offsets count every byte the guest ever wrote, the ring keeps
/// the last <c>capacity</c> of them. Readers ask from an offset and learn the first offset still kept;
/// followers wait for bytes past their offset or for the end of the VM.
/// </summary>
public sealed class ConsoleRing : IGuestOutput
{
    private readonly object _gate = new();
    private readonly int _capacity;
    private byte[] _ring; // grows by doubling up to the capacity, so a quiet VM costs little
    private readonly Action<int>? _onWrite;
    private long _total;
    private bool _closed;
    private TaskCompletionSource? _changed;

    // Offsets of a VM migrated here go on from the source's: its first byte here has offset _base.
    private readonly long _base;

    /// <param name="startOffset">The offset of the first byte (a migrated VM's console goes on from its source's).</param>
    public ConsoleRing(int capacity, Action<int>? onWrite = null, long startOffset = 0)
    {
        _base = Math.Max(0, startOffset);
        _capacity = Math.Max(1, capacity);
        _ring = new byte[Math.Min(_capacity, 4096)];
        _onWrite = onWrite;
    }

    public int Capacity => _capacity;

    /// <summary>The bytes the ring holds allocated now (it grows up to <see cref="Capacity"/>).</summary>
    public int Allocated { get { lock (_gate) return _ring.Length; } }

    /// <summary>Every byte written so far (the offset the next byte will have).</summary>
    public long Total { get { lock (_gate) return _base + _total; } }

    public long FirstKept { get { lock (_gate) return _base + Math.Max(0, _total - _ring.Length); } }

    public bool Closed { get { lock (_gate) return _closed; } }

    /// <summary>When the first byte arrived (null before), for create-to-first-exit figures.</summary>
    public long? FirstWriteTimestamp { get; private set; }

    public void Write(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length == 0) return;
        TaskCompletionSource? wake;
        lock (_gate)
        {
            FirstWriteTimestamp ??= System.Diagnostics.Stopwatch.GetTimestamp();
            if (_ring.Length < _capacity && _total + bytes.Length > _ring.Length)
            {
                // Not full yet, so nothing has wrapped: the bytes are [0, _total) and keep their places.
                var grown = new byte[(int)Math.Min(_capacity, Math.Max(2L * _ring.Length, _total + bytes.Length))];
                _ring.AsSpan(0, (int)_total).CopyTo(grown);
                _ring = grown;
            }
            var keep = bytes.Length > _ring.Length ? bytes[^_ring.Length..] : bytes;
            var start = (int)((_total + (bytes.Length - keep.Length)) % _ring.Length);
            var first = Math.Min(keep.Length, _ring.Length - start);
            keep[..first].CopyTo(_ring.AsSpan(start));
            keep[first..].CopyTo(_ring.AsSpan(0));
            _total += bytes.Length;
            wake = _changed;
            _changed = null;
        }
        _onWrite?.Invoke(bytes.Length);
        wake?.TrySetResult();
    }

    /// <summary>The ring always has room (it overwrites its oldest bytes), so a guest is never held up by a slow reader.</summary>
    public int TryWrite(ReadOnlySpan<byte> bytes)
    {
        Write(bytes);
        return bytes.Length;
    }

    public void NotifyWhenWritable(Akka.Actor.IActorRef target, object message) => target.Tell(message, Akka.Actor.ActorRefs.NoSender);

    /// <summary>No more bytes will come (the VM has ended): followers finish.</summary>
    public void Close()
    {
        TaskCompletionSource? wake;
        lock (_gate)
        {
            _closed = true;
            wake = _changed;
            _changed = null;
        }
        wake?.TrySetResult();
    }

    /// <summary>
    /// The kept bytes from <paramref name="offset"/> on (from the first kept byte if it is older), at most
    /// <paramref name="max"/>; <c>Start</c> is the offset of the first byte returned.
    /// </summary>
    public (long FirstKept, long Start, byte[] Bytes) Read(long offset, int max = int.MaxValue)
    {
        lock (_gate)
        {
            offset -= _base;
            var firstKept = Math.Max(0, _total - _ring.Length);
            var start = Math.Clamp(offset, firstKept, _total);
            var count = (int)Math.Min(_total - start, max);
            var bytes = new byte[count];
            var at = (int)(start % _ring.Length);
            var first = Math.Min(count, _ring.Length - at);
            _ring.AsSpan(at, first).CopyTo(bytes);
            _ring.AsSpan(0, count - first).CopyTo(bytes.AsSpan(first));
            return (_base + firstKept, _base + start, bytes);
        }
    }

    /// <summary>Completes when bytes past <paramref name="offset"/> exist or the ring is closed.</summary>
    public Task WaitAsync(long offset, CancellationToken cancellationToken)
    {
        lock (_gate)
        {
            if (_base + _total > offset || _closed) return Task.CompletedTask;
            _changed ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            return _changed.Task.WaitAsync(cancellationToken);
        }
    }
}

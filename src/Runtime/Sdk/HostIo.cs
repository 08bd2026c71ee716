using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using System.Text;
using Akka.Actor;
using Microsoft.Win32.SafeHandles;

namespace KvmActors.Sdk;

/// <summary>
/// Where a device's guest output goes (a UART's transmitter, a debug console). Never blocks: a device
/// handler may run on a vCPU thread, so host I/O happens elsewhere (see <see cref="HostIo"/>).
/// </summary>
public interface IGuestOutput
{
    /// <summary>
    /// Takes as many of <paramref name="bytes"/> as there is room for now and returns how many (0..all),
    /// without waiting. A sink whose target has failed takes everything and discards it.
    /// </summary>
    int TryWrite(ReadOnlySpan<byte> bytes);

    /// <summary>
    /// Tells <paramref name="target"/> <paramref name="message"/> once, when there is room again (at once
    /// if there is room now). The message comes from the sink's writer thread, as an actor message.
    /// </summary>
    void NotifyWhenWritable(IActorRef target, object message);
}

/// <summary>A host output target failed (EPIPE on a closed stdout, ENOSPC, ...); its further output is discarded.</summary>
/// <param name="Sink">The sink as named in config (<c>stdout</c>, <c>file:PATH</c>).</param>
public sealed record HostOutputFailed(string Sink, string Problem, bool BrokenPipe);

/// <summary>Guest output kept in memory, for tests: read it with <see cref="Text"/> once the VM has ended. Always has room.</summary>
public sealed class MemoryOutput : IGuestOutput
{
    private readonly object _gate = new();
    private readonly MemoryStream _bytes = new();

    public int TryWrite(ReadOnlySpan<byte> bytes) { lock (_gate) _bytes.Write(bytes); return bytes.Length; }
    public void NotifyWhenWritable(IActorRef target, object message) => target.Tell(message, ActorRefs.NoSender);
    public byte[] Bytes { get { lock (_gate) return _bytes.ToArray(); } }
    public string Text => Encoding.Latin1.GetString(Bytes);
}

/// <summary>
/// The host end of the devices, one per actor system: named output sinks that device options refer to
/// (<c>sink = stdout</c>, <c>stderr</c>, <c>null</c>, <c>"file:out.txt"</c>, <c>"memory:com1"</c>).
/// A memory sink is created on first use and kept for the system's life so a test can read it.
/// <para>
/// stdout, stderr and file sinks write through a <see cref="BoundedWriter"/>: a bounded buffer
/// (<c>kvmactors.host-io.buffer-size</c>, 64 KiB) drained by a writer thread of its own, one per target
/// (stdout and stderr are shared by every VM of the process). A full buffer is back-pressure for the
/// device (<see cref="IGuestOutput.TryWrite"/> takes less); a failed write is reported once through
/// <see cref="OutputFailed"/>.
/// </para>
/// </summary>
public sealed partial class HostIo : IExtension
{
    private readonly ConcurrentDictionary<string, MemoryOutput> _memory = new();
    private readonly ConcurrentDictionary<BoundedWriter, byte> _opened = new();
    private readonly TaskCompletionSource<HostOutputFailed> _firstFailure = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly int _bufferSize;
    private readonly TimeSpan _drainTimeout;

    private static readonly object StdGate = new();
    private static BoundedWriter? _stdout, _stderr;

    public const int DefaultBufferSize = 64 * 1024;
    public static readonly TimeSpan DefaultDrainTimeout = TimeSpan.FromMilliseconds(500);

    internal HostIo(int bufferSize, TimeSpan drainTimeout)
    {
        _bufferSize = bufferSize;
        _drainTimeout = drainTimeout;
    }

    public static HostIo For(ActorSystem system) => system.WithExtension<HostIo, HostIoProvider>();

    /// <summary>
    /// Raised (on a writer thread) when a stdout, stderr or file target of this system fails; once per target.
    /// The host ends the run on it (a closed stdout: exit 141, like a program killed by SIGPIPE).
    /// </summary>
    public event Action<HostOutputFailed>? OutputFailed;

    /// <summary>The first <see cref="OutputFailed"/> of this system, as a task (never completes if none fails).</summary>
    public Task<HostOutputFailed> FirstOutputFailure => _firstFailure.Task;

    /// <summary>The in-memory sink of this name (created if new).</summary>
    public MemoryOutput Memory(string name) => _memory.GetOrAdd(name, _ => new MemoryOutput());

    /// <summary>Sinks and inputs a host program attached by name (<c>"attached:NAME"</c>).</summary>
    public AttachedIo Attached { get; } = new();

    /// <summary>
    /// Opens the sink a device option names. Relative file paths resolve against <paramref name="baseDirectory"/>.
    /// A file target must be a regular file (created if missing) or a character device such as /dev/null;
    /// a FIFO, a socket, a directory or a missing folder is refused with an <see cref="ArgumentException"/>
    /// or <see cref="IOException"/>, never a hang.
    /// </summary>
    public IGuestOutput OpenOutput(string spec, string baseDirectory)
    {
        if (spec == "stdout") return Track(Std(ref _stdout, "stdout", 1));
        if (spec == "stderr") return Track(Std(ref _stderr, "stderr", 2));
        if (spec is "null" or "none") return NullOutput.Instance;
        if (spec.StartsWith("memory:")) return Memory(spec["memory:".Length..]);
        if (spec.StartsWith(AttachedIo.Prefix)) return Attached.Output(spec[AttachedIo.Prefix.Length..]);
        if (spec.StartsWith("file:"))
        {
            var path = Path.Combine(baseDirectory, spec["file:".Length..]);
            var stream = new FileStream(OpenFileTarget(path), FileAccess.Write, bufferSize: 0);
            return Track(new BoundedWriter(spec, stream, _bufferSize, ownsStream: true));
        }
        throw new ArgumentException($"unknown sink '{spec}' (use stdout, stderr, null, file:PATH or memory:NAME)");
    }

    // stdout and stderr: one writer per process, whichever system opens it first sizes it. write(2) on the fd
    // itself, not Console.OpenStandardOutput: .NET's console streams write under one lock shared by stdout and
    // stderr, so a write blocked on a full stdout pipe would block every stderr line (the end summary, logs) too.
    private BoundedWriter Std(ref BoundedWriter? slot, string name, int fd)
    {
        lock (StdGate)
            return slot ??= new BoundedWriter(name, new FdStream(fd), _bufferSize, ownsStream: false);
    }

    /// <summary>
    /// Plain write(2) on an inherited fd. Not a FileStream: on a seekable stdout (stdout and stderr sent to one file) it would
    /// write at an offset of its own (pwrite) and overwrite what stderr put in the same file.
    /// </summary>
    private sealed class FdStream(int fd) : Stream
    {
        private const int EINTR = 4;

        public override unsafe void Write(byte[] buffer, int offset, int count)
        {
            fixed (byte* p = buffer)
            {
                while (count > 0)
                {
                    long n = write(fd, p + offset, count);
                    if (n < 0)
                    {
                        int errno = Marshal.GetLastPInvokeError();
                        if (errno == EINTR) continue;
                        throw new IOException(Marshal.GetPInvokeErrorMessage(errno), errno);
                    }
                    offset += (int)n;
                    count -= (int)n;
                }
            }
        }

        public override void Flush() { }
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
    }

    [DllImport("libc", SetLastError = true)] private static extern unsafe long write(int fd, byte* buffer, long count);

    private BoundedWriter Track(BoundedWriter writer)
    {
        if (_opened.TryAdd(writer, 0)) writer.Failed += Report;
        return writer;
    }

    private void Report(HostOutputFailed failure)
    {
        _firstFailure.TrySetResult(failure);
        OutputFailed?.Invoke(failure);
    }

    /// <summary>
    /// Waits up to <paramref name="timeout"/> for every output of this system to reach its target; false if
    /// some did not (a stdout nobody reads). Called when the system terminates, with host-io.drain-timeout.
    /// </summary>
    public bool DrainOutputs(TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        var all = true;
        foreach (var w in _opened.Keys)
            all &= w.WaitDrained(Max(TimeSpan.Zero, deadline - DateTime.UtcNow));
        return all;
    }

    internal void OnTerminated()
    {
        DrainOutputs(_drainTimeout);
        foreach (var w in _opened.Keys) w.Failed -= Report;
    }

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;

    // ---- file targets: opened without ever blocking ----

    private const int O_WRONLY = 0x1, O_CREAT = 0x40, O_NONBLOCK = 0x800, O_CLOEXEC = 0x80000;
    private const int SEEK_END = 2, ESPIPE = 29, ENXIO = 6, F_SETFL = 4;

    [DllImport("libc", SetLastError = true)] private static extern int open([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags, int mode);
    [DllImport("libc", SetLastError = true)] private static extern long lseek(int fd, long offset, int whence);
    [DllImport("libc", SetLastError = true)] private static extern int ftruncate(int fd, long length);
    [DllImport("libc", SetLastError = true)] private static extern int fcntl(int fd, int cmd, int arg);
    [DllImport("libc")] private static extern int close(int fd);

    /// <summary>
    /// Opens a file sink's target for writing. O_NONBLOCK so a FIFO with no reader fails at once (ENXIO)
    /// instead of blocking in open(2); then only seekable targets are kept (a regular file, truncated, or a
    /// device like /dev/null): a FIFO or socket would block the writer with no end, so it is refused.
    /// </summary>
    internal static SafeFileHandle OpenFileTarget(string path)
    {
        int fd = open(path, O_WRONLY | O_CREAT | O_NONBLOCK | O_CLOEXEC, 0b110_110_100);
        if (fd < 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            if (errno == ENXIO) throw new ArgumentException($"'{path}' is a FIFO (a file sink must be a regular file or a device)");
            var why = Marshal.GetPInvokeErrorMessage(errno);
            var folder = Path.GetDirectoryName(Path.GetFullPath(path));
            if (folder is not null && !Directory.Exists(folder)) why = $"folder '{folder}' does not exist";
            throw new IOException($"cannot open '{path}': {why}");
        }
        if (lseek(fd, 0, SEEK_END) < 0 && Marshal.GetLastPInvokeError() == ESPIPE)
        {
            close(fd);
            throw new ArgumentException($"'{path}' is a FIFO, socket or terminal (a file sink must be a regular file or a device)");
        }
        ftruncate(fd, 0); // a regular file starts empty; a device has nothing to truncate (EINVAL, ignored)
        fcntl(fd, F_SETFL, 0); // blocking writes from here on: only the writer thread writes
        return new SafeFileHandle(fd, ownsHandle: true);
    }

    private sealed class NullOutput : IGuestOutput
    {
        public static readonly NullOutput Instance = new();
        public int TryWrite(ReadOnlySpan<byte> bytes) => bytes.Length;
        public void NotifyWhenWritable(IActorRef target, object message) => target.Tell(message, ActorRefs.NoSender);
    }
}

/// <summary>
/// A bounded byte buffer in front of a stream, drained by a thread of its own: producers never block
/// (<see cref="TryWrite"/> takes what fits), memory stays at the buffer's size, and a stream that blocks
/// (a pipe nobody reads) blocks only this thread. Bytes are written as soon as they arrive, so they reach
/// the target while the VM runs. Disposing lets the thread write what is buffered, then close an owned stream.
/// </summary>
public sealed class BoundedWriter : IGuestOutput, IDisposable
{
    private readonly string _name;
    private readonly Stream _stream;
    private readonly bool _ownsStream;
    private readonly byte[] _ring;
    private readonly object _gate = new();
    private readonly List<(IActorRef Target, object Message)> _waiting = [];
    private readonly Thread _thread;
    private int _head, _count, _writing; // _writing: bytes taken from the ring by the thread, not yet written
    private bool _closing;
    private HostOutputFailed? _failure;

    public BoundedWriter(string name, Stream stream, int capacity, bool ownsStream)
    {
        if (capacity <= 0) throw new ArgumentOutOfRangeException(nameof(capacity));
        _name = name;
        _stream = stream;
        _ownsStream = ownsStream;
        _ring = new byte[capacity];
        _thread = new Thread(Run) { IsBackground = true, Name = $"out-{ThreadName(name)}" };
        _thread.Start();
    }

    private static string ThreadName(string name) => name.StartsWith("file:") ? "file" : name;

    /// <summary>Raised once, on the writer thread, when a write fails.</summary>
    public event Action<HostOutputFailed>? Failed;

    public int Capacity => _ring.Length;

    /// <summary>Bytes accepted and not yet written (buffered or being written).</summary>
    public int Pending { get { lock (_gate) return _count + _writing; } }

    /// <summary>The writer thread's OS thread id, once it runs (tests look it up in /proc).</summary>
    public int NativeThreadId { get; private set; }

    public int TryWrite(ReadOnlySpan<byte> bytes)
    {
        lock (_gate)
        {
            if (_failure is not null || _closing) return bytes.Length; // discarded: the target is gone
            int n = Math.Min(bytes.Length, _ring.Length - _count);
            for (int i = 0; i < n; i++) _ring[(_head + _count + i) % _ring.Length] = bytes[i];
            _count += n;
            if (n > 0) Monitor.PulseAll(_gate);
            return n;
        }
    }

    public void NotifyWhenWritable(IActorRef target, object message)
    {
        lock (_gate)
        {
            if (!HasRoom) { _waiting.Add((target, message)); return; }
        }
        target.Tell(message, ActorRefs.NoSender);
    }

    private bool HasRoom => _failure is not null || _closing || _count < _ring.Length;

    /// <summary>Waits until every accepted byte is written (or the target failed); false on timeout.</summary>
    public bool WaitDrained(TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        lock (_gate)
        {
            while (_count + _writing > 0 && _failure is null)
            {
                var left = deadline - DateTime.UtcNow;
                if (left <= TimeSpan.Zero || !Monitor.Wait(_gate, left)) return _count + _writing == 0;
            }
            return true;
        }
    }

    /// <summary>Closes an owned target (a file) once what is buffered is written; a shared one (stdout) stays open for the process.</summary>
    public void Dispose()
    {
        if (!_ownsStream) return;
        lock (_gate)
        {
            _closing = true;
            Monitor.PulseAll(_gate);
        }
        Wake(); // nobody should wait for room on a closed sink; the thread writes what is left and ends on its own
    }

    private void Run()
    {
        NativeThreadId = gettid();
        var chunk = new byte[Math.Min(_ring.Length, 16 * 1024)];
        while (true)
        {
            int n;
            lock (_gate)
            {
                while (_count == 0 && !_closing) Monitor.Wait(_gate);
                if (_count == 0) break; // closing and drained
                n = Math.Min(Math.Min(_count, chunk.Length), _ring.Length - _head); // contiguous part
                Array.Copy(_ring, _head, chunk, 0, n);
                _head = (_head + n) % _ring.Length;
                _count -= n;
                _writing = n;
            }
            // Room was made: whoever waits for it may go on while this thread writes.
            Wake();
            try
            {
                _stream.Write(chunk, 0, n);
                _stream.Flush();
            }
            catch (Exception e) when (e is IOException or ObjectDisposedException or NotSupportedException or UnauthorizedAccessException)
            {
                Fail(e);
                break;
            }
            finally
            {
                lock (_gate) { _writing = 0; Monitor.PulseAll(_gate); }
            }
        }
        if (_ownsStream)
        {
            try { _stream.Dispose(); }
            catch (IOException e) { Fail(e); }
        }
    }

    private void Fail(Exception e)
    {
        HostOutputFailed failure;
        lock (_gate)
        {
            if (_failure is not null) return;
            // EPIPE: the reading end is closed (`| head`). .NET ignores SIGPIPE, so write(2) returns the error.
            bool pipe = e is IOException io && (io.HResult & 0xFFFF) == 32 || e.Message.Contains("Broken pipe", StringComparison.OrdinalIgnoreCase);
            _failure = failure = new HostOutputFailed(_name, e.Message, pipe);
            _count = 0;
            Monitor.PulseAll(_gate);
        }
        Wake();
        Failed?.Invoke(failure);
    }

    private void Wake()
    {
        List<(IActorRef Target, object Message)> wake;
        lock (_gate)
        {
            if (_waiting.Count == 0 || !HasRoom) return;
            wake = [.. _waiting];
            _waiting.Clear();
        }
        foreach (var (target, message) in wake) target.Tell(message, ActorRefs.NoSender);
    }

    [DllImport("libc")] private static extern int gettid();
}

public sealed class HostIoProvider : ExtensionIdProvider<HostIo>
{
    public override HostIo CreateExtension(ExtendedActorSystem system)
    {
        // Read with the SDK's own defaults when the system has no kvmactors block (a plain test kit).
        var c = system.Settings.Config;
        int size = c.HasPath("kvmactors.host-io.buffer-size") ? (int)(c.GetByteSize("kvmactors.host-io.buffer-size") ?? HostIo.DefaultBufferSize) : HostIo.DefaultBufferSize;
        var drain = c.HasPath("kvmactors.host-io.drain-timeout") ? c.GetTimeSpan("kvmactors.host-io.drain-timeout") : HostIo.DefaultDrainTimeout;
        if (size is < 16 or > 64 * 1024 * 1024)
            throw new ConfigException("(runtime config)", "kvmactors.host-io.buffer-size", $"{size} is out of range (16 bytes .. 64M)");
        var io = new HostIo(size, drain);
        system.RegisterOnTermination(io.OnTerminated);
        return io;
    }
}

using System.Diagnostics;
using System.IO.Pipes;
using Akka.TestKit.Xunit2;
using KvmActors.Sdk;
using Xunit;
using Xunit.Abstractions;

namespace KvmActors.Tests.Sdk;

/// <summary>Host output's bounded buffer: the producer never blocks, memory stays bounded, failures are reported.</summary>
public sealed class BoundedWriterTests(ITestOutputHelper output) : TestKit(output: output)
{
    /// <summary>A target that blocks every write until released (a pipe nobody reads).</summary>
    private sealed class GatedStream : Stream
    {
        public readonly ManualResetEventSlim Open = new(false);
        public readonly MemoryStream Written = new();
        private int _blocked;
        public int Blocked => Volatile.Read(ref _blocked);
        public override void Write(byte[] buffer, int offset, int count)
        {
            Interlocked.Increment(ref _blocked);
            Open.Wait();
            lock (Written) Written.Write(buffer, offset, count);
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

    private sealed record Room;

    [Fact]
    public void A_blocked_target_never_blocks_the_producer_and_memory_stays_at_the_buffer_size()
    {
        var target = new GatedStream();
        using var writer = new BoundedWriter("test", target, 4096, ownsStream: true);
        var data = new byte[1 << 20];
        new Random(1).NextBytes(data);

        var watch = Stopwatch.StartNew();
        long accepted = 0;
        for (int i = 0; i < 1000; i++) accepted += writer.TryWrite(data.AsSpan((int)(accepted % (data.Length - 4096)), 1024));
        watch.Stop();
        AwaitCondition(() => target.Blocked > 0, TimeSpan.FromSeconds(5));
        for (int i = 0; i < 10; i++) accepted += writer.TryWrite(data.AsSpan((int)accepted, 1024));

        // The writer thread holds at most one chunk (the buffer's size here) besides the buffer itself.
        Assert.InRange(accepted, 4096, 2 * 4096);
        Assert.InRange(writer.Pending, 1, 2 * 4096);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(1), $"1000 writes took {watch.Elapsed}");

        // Room is announced by a message, only once there is some.
        var probe = CreateTestProbe();
        writer.NotifyWhenWritable(probe, new Room());
        probe.ExpectNoMsg(TimeSpan.FromMilliseconds(200));
        target.Open.Set();
        probe.ExpectMsg<Room>(TimeSpan.FromSeconds(5));
        Assert.True(writer.WaitDrained(TimeSpan.FromSeconds(5)));
        lock (target.Written) Assert.Equal(data.AsSpan(0, (int)accepted).ToArray(), target.Written.ToArray());
    }

    [Fact]
    public void A_closed_pipe_is_reported_once_as_a_broken_pipe_and_later_output_is_discarded()
    {
        using var server = new AnonymousPipeServerStream(PipeDirection.Out);
        using (var client = new AnonymousPipeClientStream(PipeDirection.In, server.ClientSafePipeHandle)) { }
        server.DisposeLocalCopyOfClientHandle(); // nobody reads now: write(2) gets EPIPE
        using var writer = new BoundedWriter("stdout", server, 4096, ownsStream: false);
        var failures = new List<HostOutputFailed>();
        writer.Failed += f => { lock (failures) failures.Add(f); };

        Assert.Equal(5, writer.TryWrite("hello"u8));
        AwaitCondition(() => { lock (failures) return failures.Count == 1; }, TimeSpan.FromSeconds(5));
        Assert.Equal(3, writer.TryWrite("abc"u8)); // taken and discarded: the target is gone
        Assert.True(writer.WaitDrained(TimeSpan.Zero));
        lock (failures)
        {
            var f = Assert.Single(failures);
            Assert.Equal("stdout", f.Sink);
            Assert.True(f.BrokenPipe, f.Problem);
        }
    }

    [Fact]
    public void A_file_sink_on_a_fifo_or_in_a_missing_folder_is_refused_at_once()
    {
        var dir = Directory.CreateTempSubdirectory("kvmactors-sink-").FullName;
        try
        {
            var fifo = Path.Combine(dir, "fifo");
            using (var mk = Process.Start("mkfifo", fifo)!)
            {
                Assert.True(mk.WaitForExit(5000));
                Assert.Equal(0, mk.ExitCode);
            }
            var io = HostIo.For(Sys);
            var e = Assert.Throws<ArgumentException>(() => io.OpenOutput("file:fifo", dir));
            Assert.Contains("FIFO", e.Message);
            var missing = Assert.Throws<IOException>(() => io.OpenOutput("file:no/such/dir/out.txt", dir));
            Assert.Contains("does not exist", missing.Message);
            Assert.Throws<IOException>(() => io.OpenOutput("file:.", dir)); // a directory
            // A character device is fine (/dev/null).
            var devNull = io.OpenOutput("file:/dev/null", dir);
            Assert.Equal(3, devNull.TryWrite("abc"u8));
            (devNull as IDisposable)?.Dispose();
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}

using System.Text;
using KvmActors.Host.Serve;
using Xunit;

namespace KvmActors.Tests.Serve;

public sealed class ConsoleRingTests
{
    private static string Text(byte[] b) => Encoding.ASCII.GetString(b);

    [Fact]
    public void Keeps_the_last_capacity_bytes_with_offsets_counting_every_byte()
    {
        var ring = new ConsoleRing(10);
        ring.Write("0123456"u8);
        Assert.Equal((0L, 0L, "0123456"), Unpack(ring.Read(0)));
        ring.Write("789abcd"u8); // 14 bytes written, the last 10 kept
        Assert.Equal(14, ring.Total);
        Assert.Equal(4, ring.FirstKept);
        Assert.Equal((4L, 4L, "456789abcd"), Unpack(ring.Read(0)));
        Assert.Equal((4L, 12L, "cd"), Unpack(ring.Read(12)));
        Assert.Equal((4L, 14L, ""), Unpack(ring.Read(99)));
        Assert.Equal((4L, 6L, "678"), Unpack(ring.Read(6, 3)));
        ring.Write("ABCDEFGHIJKLMNOPQRSTUVWXYZ"u8); // one write longer than the ring
        Assert.Equal((30L, 30L, "QRSTUVWXYZ"), Unpack(ring.Read(0)));
    }

    [Fact]
    public void Grows_from_small_to_its_capacity_without_losing_bytes()
    {
        var ring = new ConsoleRing(1 << 20);
        var expected = new StringBuilder();
        for (int i = 0; i < 3000; i++)
        {
            var line = $"line {i:D5}\n";
            expected.Append(line);
            ring.Write(Encoding.ASCII.GetBytes(line));
        }
        Assert.Equal(expected.ToString(), Text(ring.Read(0).Bytes));
        Assert.Equal(0, ring.FirstKept);
    }

    [Fact]
    public async Task Waiters_wake_on_bytes_and_on_close()
    {
        var ring = new ConsoleRing(16);
        var wait = ring.WaitAsync(0, CancellationToken.None);
        Assert.False(wait.IsCompleted);
        ring.Write("x"u8);
        await wait.WaitAsync(TimeSpan.FromSeconds(5));
        var second = ring.WaitAsync(1, CancellationToken.None);
        Assert.False(second.IsCompleted);
        ring.Close();
        await second.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.True(ring.WaitAsync(1, CancellationToken.None).IsCompleted);
    }

    private static (long, long, string) Unpack((long FirstKept, long Start, byte[] Bytes) r) => (r.FirstKept, r.Start, Text(r.Bytes));
}

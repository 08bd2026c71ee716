using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Text.Json;
using KvmActors.Runtime.Snapshot;

namespace KvmActors.Host.Serve.Migration;

/// <summary>
/// The live-migration stream, the body of <c>POST /migrations/incoming</c> on the target: frames of
/// <c>kind (1 byte) | length (u32 LE) | payload</c>, in this order: one Hello (JSON <see cref="MigrationHello"/>),
/// any number of Pages (<c>region u32 | first page u64 | count u32 | count x 4096 bytes</c>) and Zero (the same
/// header, no bytes: those pages are all zero), one State (JSON <see cref="SnapshotState"/>), at most one Console
/// (the source console's kept bytes up to the End offset; fleet migrations, which keep the VM's id), one End (u64 LE: the
/// console offset the target's console goes on from, taken with the guest paused). A later frame for a page
/// overwrites an earlier one: pre-copy sends a page again each round the guest dirtied it.
/// </summary>
public static class MigrationWire
{
    public const string ContentType = "application/x-kvmactors-migration";
    public const byte Hello = 1, Pages = 2, Zero = 3, State = 4, End = 5, Console = 6;
    public const int PageHeader = 16;
    /// <summary>No frame is larger (pages are sent in batches of at most 1 MiB): a stream cannot make the target buffer more.</summary>
    public const int MaxFrame = (int)SnapshotFiles.MaxStateBytes;

    public static async ValueTask WriteFrame(PipeWriter writer, byte kind, ReadOnlyMemory<byte> payload, CancellationToken ct)
    {
        var header = writer.GetSpan(5);
        header[0] = kind;
        BinaryPrimitives.WriteUInt32LittleEndian(header[1..], (uint)payload.Length);
        writer.Advance(5);
        if (payload.Length > 0) await writer.WriteAsync(payload, ct);
        else await writer.FlushAsync(ct);
    }

    public static ValueTask WriteJson<T>(PipeWriter writer, byte kind, T value, CancellationToken ct) =>
        WriteFrame(writer, kind, JsonSerializer.SerializeToUtf8Bytes(value, SnapshotFiles.Json), ct);

    public static byte[] PageFrame(int region, long firstPage, int count, ReadOnlySpan<byte> bytes)
    {
        var frame = new byte[PageHeader + bytes.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(frame, (uint)region);
        BinaryPrimitives.WriteUInt64LittleEndian(frame.AsSpan(4), (ulong)firstPage);
        BinaryPrimitives.WriteUInt32LittleEndian(frame.AsSpan(12), (uint)count);
        bytes.CopyTo(frame.AsSpan(PageHeader));
        return frame;
    }

    /// <summary>The next frame, or null at the end of the stream; a frame over <see cref="MaxFrame"/> is refused before it is read.</summary>
    public static async Task<(byte Kind, byte[] Payload)?> ReadFrame(Stream stream, CancellationToken ct)
    {
        var header = new byte[5];
        if (!await ReadExactly(stream, header, ct)) return null;
        var length = BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(1));
        if (length > MaxFrame) throw new MigrationProtocolException($"a frame of {length} bytes (at most {MaxFrame})");
        var payload = new byte[length];
        if (!await ReadExactly(stream, payload, ct)) throw new MigrationProtocolException("the stream ended inside a frame");
        return (header[0], payload);
    }

    private static async Task<bool> ReadExactly(Stream stream, byte[] buffer, CancellationToken ct)
    {
        var done = 0;
        while (done < buffer.Length)
        {
            var n = await stream.ReadAsync(buffer.AsMemory(done), ct);
            if (n == 0)
            {
                if (done == 0) return false;
                throw new MigrationProtocolException("the stream ended inside a frame");
            }
            done += n;
        }
        return true;
    }
}

/// <summary>What the target needs before any page: the machine's shape (to check its limits and stage memory) and the guest.</summary>
public sealed record MigrationHello(
    string Format, int FormatVersion, string VmName, string SourceId, SnapshotGuest Guest, IReadOnlyList<SnapshotRegion> Memory,
    bool Irqchip, int Vcpus);

public sealed class MigrationProtocolException(string message) : Exception(message);

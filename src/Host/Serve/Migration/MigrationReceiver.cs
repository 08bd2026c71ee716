using System.Buffers.Binary;
using System.Text.Json;
using KvmActors.Runtime.Config;
using KvmActors.Runtime.Memory;
using KvmActors.Runtime.Snapshot;
using KvmActors.Sdk;

namespace KvmActors.Host.Serve.Migration;

/// <summary>
/// Live migration, target side: reads the stream of <see cref="MigrationWire"/> frames into staging memory (as
/// large as the guest's, checked against the host's limits before the first page), and at the end builds the VM
/// from the final state with that memory and runs it. Nothing runs before the whole stream arrived and checked
/// out; a broken stream leaves nothing behind.
/// </summary>
public sealed class MigrationReceiver(VmHost host)
{
    /// <param name="keepId">The VM's id here (a fleet migration keeps it); else a new one.</param>
    public async Task<HostedVm> ReceiveAsync(Stream body, CancellationToken ct, string? keepId = null)
    {
        var first = await MigrationWire.ReadFrame(body, ct) ?? throw Bad("the stream is empty");
        if (first.Kind != MigrationWire.Hello) throw Bad($"the stream starts with frame kind {first.Kind}, not Hello");
        var hello = Json<MigrationHello>(first.Payload, "Hello");
        if (hello.Format != SnapshotState.FormatName || hello.FormatVersion != SnapshotState.CurrentFormatVersion)
            throw new ProblemException(422, "Migration refused", $"the source sends {hello.Format} version {hello.FormatVersion}; this host reads {SnapshotState.FormatName} version {SnapshotState.CurrentFormatVersion}");
        var regions = hello.Memory.Select(r => new MemoryRegionSpec(r.Name, r.GuestAddress, r.Size, r.ReadOnly)).ToList();
        if (regions.Any(r => r.Size > int.MaxValue)) throw new ProblemException(422, "Migration refused", "a memory region over 2 GiB");
        host.CheckCapacity(hello.Vcpus, regions.Where(r => !r.ReadOnly).Aggregate(0UL, (a, r) => a + r.Size));
        GuestMemory staging;
        // Pages that came with bytes: only those are copied into the VM (the rest is zero there as here).
        var received = regions.Select(r => new ulong[(r.Size / GuestMemory.PageSize + 63) / 64]).ToArray();
        try { staging = GuestMemory.Create(null, regions); }
        catch (KvmActorsException e) { throw new ProblemException(422, "Migration refused", e.Message); }
        try
        {
            SnapshotState? state = null;
            byte[]? history = null;
            while (true)
            {
                var frame = await MigrationWire.ReadFrame(body, ct) ?? throw Bad("the stream ended before its End frame");
                switch (frame.Kind)
                {
                    case MigrationWire.Pages or MigrationWire.Zero:
                        Apply(staging, regions, received, frame.Kind, frame.Payload);
                        break;
                    case MigrationWire.State:
                        state = Json<SnapshotState>(frame.Payload, "State");
                        break;
                    case MigrationWire.Console:
                        if (history is not null) throw Bad("a second Console frame");
                        history = frame.Payload;
                        break;
                    case MigrationWire.End:
                        if (state is null) throw Bad("End before the State frame");
                        if (frame.Payload.Length != 8) throw Bad("an End frame without the console offset");
                        var consoleOffset = BinaryPrimitives.ReadInt64LittleEndian(frame.Payload);
                        if (history is not null && history.Length > consoleOffset) throw Bad($"{history.Length} console bytes before offset {consoleOffset}");
                        return await host.AdmitMigratedAsync(hello, state, (index, bytes) => CopyReceived(staging, received[index], index, bytes), consoleOffset, ct,
                            keepId, history);
                    default:
                        throw Bad($"unknown frame kind {frame.Kind}");
                }
            }
        }
        catch (MigrationProtocolException e)
        {
            throw Bad(e.Message);
        }
        finally
        {
            staging.Dispose(); // the VM copied it into its own memory (or never came to be)
        }
    }

    /// <summary>Copy the pages that arrived with bytes into the VM's region (its other pages are zero already).</summary>
    private static void CopyReceived(GuestMemory staging, ulong[] received, int index, Span<byte> into)
    {
        var from = staging.RegionBytes(index);
        var page = (int)GuestMemory.PageSize;
        var pages = into.Length / page;
        for (var p = 0; p < pages;)
        {
            if ((received[p >> 6] & (1UL << (p & 63))) == 0) { p++; continue; }
            var first = p;
            while (p < pages && (received[p >> 6] & (1UL << (p & 63))) != 0) p++;
            from.Slice(first * page, (p - first) * page).CopyTo(into.Slice(first * page));
        }
    }

    private static void Apply(GuestMemory staging, List<MemoryRegionSpec> regions, ulong[][] received, byte kind, byte[] payload)
    {
        if (payload.Length < MigrationWire.PageHeader) throw Bad("a page frame shorter than its header");
        var region = BinaryPrimitives.ReadUInt32LittleEndian(payload);
        var firstPage = BinaryPrimitives.ReadUInt64LittleEndian(payload.AsSpan(4));
        var count = BinaryPrimitives.ReadUInt32LittleEndian(payload.AsSpan(12));
        if (region >= regions.Count) throw Bad($"pages for region {region}; the VM has {regions.Count}");
        var pages = regions[(int)region].Size / GuestMemory.PageSize;
        if (count == 0 || firstPage >= pages || count > pages - firstPage)
            throw Bad($"pages {firstPage}+{count} outside region '{regions[(int)region].Name}' ({pages} pages)");
        var length = (int)(count * GuestMemory.PageSize);
        var into = staging.RegionBytes((int)region).Slice((int)(firstPage * GuestMemory.PageSize), length);
        var bits = received[region];
        if (kind == MigrationWire.Zero)
        {
            if (payload.Length != MigrationWire.PageHeader) throw Bad("a zero-page frame with bytes");
            into.Clear();
            for (var p = firstPage; p < firstPage + count; p++) bits[p >> 6] &= ~(1UL << (int)(p & 63));
            return;
        }
        if (payload.Length != MigrationWire.PageHeader + length) throw Bad($"a page frame of {payload.Length} bytes for {count} page(s)");
        payload.AsSpan(MigrationWire.PageHeader).CopyTo(into);
        for (var p = firstPage; p < firstPage + count; p++) bits[p >> 6] |= 1UL << (int)(p & 63);
    }

    private static T Json<T>(byte[] payload, string what)
    {
        try { return JsonSerializer.Deserialize<T>(payload, SnapshotFiles.Json) ?? throw Bad($"an empty {what} frame"); }
        catch (JsonException e) { throw Bad($"the {what} frame is not valid: {e.Message}"); }
    }

    private static ProblemException Bad(string detail) => new(400, "Bad migration stream", detail);
}

using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using KvmActors.Runtime.Memory;
using Microsoft.Win32.SafeHandles;

namespace KvmActors.Runtime.Snapshot;

/// <summary>
/// A snapshot directory: <c>state.json</c> (<see cref="SnapshotState"/>), one <c>memory-N-NAME.bin</c> per region
/// (sparse: all-zero pages are holes) and <c>SHA256SUMS</c> (the <c>sha256sum</c> format, so <c>sha256sum -c</c>
/// checks it too). SHA256SUMS is written last: a directory without it is an unfinished snapshot and is refused.
/// </summary>
public static class SnapshotFiles
{
    public const string StateFile = "state.json";
    public const string SumsFile = "SHA256SUMS";
    /// <summary>A state file is KiBs per vCPU; one larger than this is not ours.</summary>
    public const long MaxStateBytes = 64L << 20;
    private const int Chunk = 1 << 20;

    public static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
        RespectNullableAnnotations = true,
        RespectRequiredConstructorParameters = true,
        MaxDepth = 64,
    };

    public static string RegionFileName(int index, string regionName) =>
        $"memory-{index}-{new string(regionName.Select(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' ? c : '_').ToArray())}.bin";

    /// <summary>Write <paramref name="state"/> and the guest's memory into <paramref name="directory"/> (created; must be empty).</summary>
    public static (long MemoryBytes, long DataBytes, long StateBytes, TimeSpan Elapsed) Write(string directory, SnapshotState state, GuestMemory memory)
    {
        var clock = Stopwatch.StartNew();
        PrepareDirectory(directory);
        var sums = new StringBuilder();
        long memoryBytes = 0, dataBytes = 0;
        for (var i = 0; i < state.Memory.Count; i++)
        {
            var region = state.Memory[i];
            var (hash, data) = WriteRegion(Path.Combine(directory, region.File), memory.RegionBytes(i));
            memoryBytes += (long)region.Size;
            dataBytes += data;
            sums.Append(hash).Append("  ").Append(region.File).Append('\n');
        }
        var json = JsonSerializer.SerializeToUtf8Bytes(state, Json);
        File.WriteAllBytes(Path.Combine(directory, StateFile), json);
        sums.Insert(0, $"{Convert.ToHexStringLower(SHA256.HashData(json))}  {StateFile}\n");
        // Last, and by rename: its presence says every other file is complete.
        var tmp = Path.Combine(directory, SumsFile + ".tmp");
        File.WriteAllText(tmp, sums.ToString());
        File.Move(tmp, Path.Combine(directory, SumsFile));
        return (memoryBytes, dataBytes, json.Length, clock.Elapsed);
    }

    private static void PrepareDirectory(string directory)
    {
        if (File.Exists(directory)) throw new SnapshotException($"'{directory}' is a file, not a directory");
        if (Directory.Exists(directory) && Directory.EnumerateFileSystemEntries(directory).Any())
            throw new SnapshotException($"'{directory}' is not empty: a snapshot is written into a new or empty directory");
        Directory.CreateDirectory(directory);
    }

    /// <summary>Write the non-zero pages of a region at their offsets (holes elsewhere); its hash and the bytes written.</summary>
    private static (string Hash, long DataBytes) WriteRegion(string path, ReadOnlySpan<byte> bytes)
    {
        using var file = File.OpenHandle(path, FileMode.CreateNew, FileAccess.Write);
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        RandomAccess.SetLength(file, bytes.Length);
        long data = 0;
        var page = (int)GuestMemory.PageSize;
        for (var offset = 0; offset < bytes.Length; offset += Chunk)
        {
            var chunk = bytes.Slice(offset, Math.Min(Chunk, bytes.Length - offset));
            hash.AppendData(chunk);
            // Runs of pages holding any non-zero byte, written as one write each.
            var p = 0;
            while (p < chunk.Length)
            {
                if (!chunk.Slice(p, page).ContainsAnyExcept((byte)0)) { p += page; continue; }
                var start = p;
                while (p < chunk.Length && chunk.Slice(p, page).ContainsAnyExcept((byte)0)) p += page;
                RandomAccess.Write(file, chunk[start..p], offset + start);
                data += p - start;
            }
        }
        return (Convert.ToHexStringLower(hash.GetHashAndReset()), data);
    }

    /// <summary>Read and check a snapshot's state (its memory files are checked as they are loaded: <see cref="LoadRegion"/>).</summary>
    public static LoadedSnapshot Load(string directory)
    {
        if (!Directory.Exists(directory)) throw new SnapshotException($"no snapshot directory '{directory}'");
        var sumsPath = Path.Combine(directory, SumsFile);
        if (!File.Exists(sumsPath))
            throw new SnapshotException($"'{directory}' is not a complete snapshot: it has no {SumsFile} (written last, so the snapshot was not finished)");
        var sums = ReadSums(sumsPath);
        var statePath = Path.Combine(directory, StateFile);
        var json = ReadBounded(statePath, MaxStateBytes);
        if (!sums.TryGetValue(StateFile, out var stateHash)) throw new SnapshotException($"{sumsPath}: no checksum for {StateFile}");
        if (Convert.ToHexStringLower(SHA256.HashData(json)) != stateHash)
            throw new SnapshotException($"{statePath}: checksum mismatch (the file was changed or is corrupt)");
        SnapshotState state;
        try
        {
            CheckFormat(json, statePath);
            state = JsonSerializer.Deserialize<SnapshotState>(json, Json) ?? throw new SnapshotException($"{statePath}: empty");
        }
        catch (JsonException e) { throw new SnapshotException($"{statePath}: not a valid state file: {e.Message}", e); }
        Validate(state, statePath);
        for (var i = 0; i < state.Memory.Count; i++)
        {
            var region = state.Memory[i];
            var path = Path.Combine(directory, region.File);
            if (!sums.ContainsKey(region.File)) throw new SnapshotException($"{sumsPath}: no checksum for {region.File}");
            var info = new FileInfo(path);
            if (!info.Exists) throw new SnapshotException($"memory file '{path}' of region '{region.Name}' is missing");
            if (info.Length != (long)region.Size)
                throw new SnapshotException($"memory file '{path}' is {info.Length} bytes; region '{region.Name}' is {region.Size} (truncated or not this snapshot's)");
        }
        return new LoadedSnapshot(Path.GetFullPath(directory), state, sums);
    }

    /// <summary>Format and version first, so another format is refused as such rather than as a shape error.</summary>
    private static void CheckFormat(byte[] json, string path)
    {
        using var doc = JsonDocument.Parse(json, new JsonDocumentOptions { MaxDepth = 64 });
        var root = doc.RootElement;
        if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("format", out var f) || f.ValueKind != JsonValueKind.String || f.GetString() != SnapshotState.FormatName)
            throw new SnapshotException($"{path}: not a KvmActors snapshot (format is not \"{SnapshotState.FormatName}\")");
        if (!root.TryGetProperty("formatVersion", out var v) || !v.TryGetInt32(out var version))
            throw new SnapshotException($"{path}: no formatVersion");
        if (version != SnapshotState.CurrentFormatVersion)
            throw new SnapshotException($"{path}: snapshot format version {version}; this KvmActors reads version {SnapshotState.CurrentFormatVersion} only");
    }

    private static void Validate(SnapshotState s, string path)
    {
        if (s.Vcpus.Count is < 1 or > 254) throw new SnapshotException($"{path}: {s.Vcpus.Count} vCPUs (1-254)");
        for (var i = 0; i < s.Vcpus.Count; i++)
            if (s.Vcpus[i].State.VcpuId != i) throw new SnapshotException($"{path}: vcpus[{i}] is vCPU {s.Vcpus[i].State.VcpuId}");
        if (s.Memory.Count == 0) throw new SnapshotException($"{path}: no memory regions");
        for (var i = 0; i < s.Memory.Count; i++)
        {
            var r = s.Memory[i];
            // The file is named by the snapshot: it must be one of ours inside the directory, never a path.
            if (r.File != RegionFileName(i, r.Name))
                throw new SnapshotException($"{path}: memory[{i}].file '{r.File}' is not the region's file name ('{RegionFileName(i, r.Name)}')");
            if (r.Size == 0 || r.Size % GuestMemory.PageSize != 0 || r.GuestAddress % GuestMemory.PageSize != 0)
                throw new SnapshotException($"{path}: memory[{i}] is not page-aligned");
        }
        if (s.Devices.Select(d => d.Name).Distinct().Count() != s.Devices.Count) throw new SnapshotException($"{path}: a device is listed twice");
    }

    /// <summary>Load region <paramref name="index"/>'s file into <paramref name="into"/>, checking its SHA-256.</summary>
    public static void LoadRegion(LoadedSnapshot snapshot, int index, Span<byte> into)
    {
        var region = snapshot.State.Memory[index];
        var path = Path.Combine(snapshot.Directory, region.File);
        if ((ulong)into.Length != region.Size) throw new SnapshotException($"region '{region.Name}' is {into.Length} bytes in the VM, {region.Size} in the snapshot");
        using var file = OpenRegular(path);
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        for (var offset = 0; offset < into.Length;)
        {
            var chunk = into.Slice(offset, Math.Min(Chunk, into.Length - offset));
            var n = RandomAccess.Read(file, chunk, offset);
            if (n <= 0) throw new SnapshotException($"memory file '{path}' ended at {offset} bytes; region '{region.Name}' is {region.Size}");
            hash.AppendData(chunk[..n]);
            offset += n;
        }
        if (Convert.ToHexStringLower(hash.GetHashAndReset()) != snapshot.Sums[region.File])
            throw new SnapshotException($"memory file '{path}': checksum mismatch (the file was changed or is corrupt)");
    }

    private static Dictionary<string, string> ReadSums(string path)
    {
        var sums = new Dictionary<string, string>();
        foreach (var line in Encoding.UTF8.GetString(ReadBounded(path, 1 << 20)).Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var sep = line.IndexOf("  ", StringComparison.Ordinal);
            if (sep != 64) throw new SnapshotException($"{path}: '{line}' is not a sha256sum line");
            sums[line[(sep + 2)..]] = line[..sep];
        }
        return sums;
    }

    /// <summary>
    /// Open a snapshot file for reading. Every file of a snapshot has a non-zero size; a FIFO, a device or a /proc
    /// file has size 0 by stat, so checking the size first means none of them is ever opened (a FIFO would block).
    /// </summary>
    private static SafeFileHandle OpenRegular(string path)
    {
        try
        {
            var info = new FileInfo(path);
            if (!info.Exists) throw new SnapshotException($"'{path}' is missing");
            if (info.Length == 0) throw new SnapshotException($"'{path}' is empty or not a regular file");
            return File.OpenHandle(path, FileMode.Open, FileAccess.Read);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new SnapshotException($"'{path}' cannot be read: {e.Message}", e);
        }
    }

    private static byte[] ReadBounded(string path, long max)
    {
        using var file = OpenRegular(path);
        var length = RandomAccess.GetLength(file);
        if (length > max) throw new SnapshotException($"'{path}' is {length} bytes, more than a snapshot's {Path.GetFileName(path)} can be ({max})");
        var bytes = new byte[length];
        var done = 0;
        while (done < bytes.Length)
        {
            var n = RandomAccess.Read(file, bytes.AsSpan(done), done);
            if (n <= 0) break;
            done += n;
        }
        return done == bytes.Length ? bytes : bytes[..done];
    }
}

/// <summary>A snapshot whose state file was read and checked; its memory is read when the VM is built.</summary>
public sealed record LoadedSnapshot(string Directory, SnapshotState State, IReadOnlyDictionary<string, string> Sums);

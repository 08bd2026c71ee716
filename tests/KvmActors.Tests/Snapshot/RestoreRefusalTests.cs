using System.Security.Cryptography;
using System.Text.RegularExpressions;
using KvmActors.Tests.Serve;
using KvmActors.Tests.Support;
using Xunit;

namespace KvmActors.Tests.Snapshot;

/// <summary>One good snapshot of the counter, taken through a real server that stays up (its VM paused) for the API cases.</summary>
public sealed class GoodSnapshot : IAsyncLifetime
{
    public const string Name = "base";
    public ServeServer Server { get; private set; } = null!;
    public string VmId { get; private set; } = "";
    public string SnapshotRoot => Path.Combine(Server.GuestDir, "snapshots");
    public string Directory => Path.Combine(SnapshotRoot, Name);

    public async Task InitializeAsync()
    {
        Server = ServeServer.Start();
        VmId = await Server.CreateCounterAsync(SnapshotGuests.Overrides(2000, CounterServe.SlowDelay));
        await Server.WaitLinesAsync(VmId, 2);
        var (status, body) = await Server.SnapshotAsync(VmId, Name, resume: false);
        if (status != 200) throw new InvalidOperationException($"snapshot: {status} {body.ToJsonString()}");
    }

    /// <summary>A copy of the good snapshot at <paramref name="path"/>, to be spoiled.</summary>
    public string CopyTo(string path)
    {
        System.IO.Directory.CreateDirectory(path);
        foreach (var f in System.IO.Directory.EnumerateFiles(Directory)) File.Copy(f, Path.Combine(path, Path.GetFileName(f)));
        return path;
    }

    public Task DisposeAsync()
    {
        Server.Dispose();
        return Task.CompletedTask;
    }
}

/// <summary>
/// A snapshot directory that is not a whole, unchanged KvmActors snapshot is refused before any guest runs:
/// <c>run --restore</c> exits 2 with one line naming the problem and prints nothing on stdout; the API answers 4xx.
/// </summary>
[Collection(CounterProcessesCollection.Name)]
public sealed class RestoreRefusalTests(GoodSnapshot good) : IClassFixture<GoodSnapshot>
{
    private const string State = "state.json", Sums = "SHA256SUMS", Memory = "memory-0-ram.bin";

    private string Spoiled(string name) => good.CopyTo(Path.Combine(good.Server.Dir, "cases", name));

    private static string Sha(byte[] bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));

    /// <summary>Rewrites state.json with <paramref name="change"/> and its checksum line to match, so the checksum passes.</summary>
    private static void RewriteState(string dir, Func<string, string> change)
    {
        var json = change(File.ReadAllText(Path.Combine(dir, State)));
        File.WriteAllText(Path.Combine(dir, State), json);
        var sums = File.ReadAllText(Path.Combine(dir, Sums));
        File.WriteAllText(Path.Combine(dir, Sums), Regex.Replace(sums, @"^[0-9a-f]{64}  state\.json$", $"{Sha(File.ReadAllBytes(Path.Combine(dir, State)))}  {State}", RegexOptions.Multiline));
    }

    private static void AssertRefused(string dir, params string[] expected)
    {
        var r = Kvmactors.Run(TimeSpan.FromSeconds(60), "run", "--restore", dir);
        Assert.True(r.ExitCode == 2, $"exit {r.ExitCode}: {r.Stderr}");
        Assert.Equal("", r.Stdout);
        var error = r.Stderr.TrimEnd('\n');
        Assert.DoesNotContain('\n', error); // one line
        Assert.StartsWith("kvmactors: ", error);
        foreach (var e in expected) Assert.Contains(e, error);
    }

    [KvmFact]
    public void One_changed_byte_in_state_json_is_a_checksum_mismatch()
    {
        var dir = Spoiled("byte");
        var bytes = File.ReadAllBytes(Path.Combine(dir, State));
        bytes[bytes.Length / 2] ^= 0x01;
        File.WriteAllBytes(Path.Combine(dir, State), bytes);
        AssertRefused(dir, State, "checksum mismatch");
    }

    [KvmFact]
    public void A_truncated_state_json_is_a_checksum_mismatch()
    {
        var dir = Spoiled("truncated-state");
        var bytes = File.ReadAllBytes(Path.Combine(dir, State));
        File.WriteAllBytes(Path.Combine(dir, State), bytes[..(bytes.Length / 2)]);
        AssertRefused(dir, State, "checksum mismatch");
    }

    [KvmFact]
    public void Another_format_version_with_a_matching_checksum_is_refused_by_its_version()
    {
        var dir = Spoiled("version");
        RewriteState(dir, json =>
        {
            Assert.Contains("\"formatVersion\": 1,", json);
            return json.Replace("\"formatVersion\": 1,", "\"formatVersion\": 2,");
        });
        AssertRefused(dir, State, "format version 2");
    }

    [KvmFact]
    public void Garbled_json_with_a_matching_checksum_is_not_a_valid_state_file()
    {
        var dir = Spoiled("garbled");
        RewriteState(dir, json => json[..(json.Length / 2)] + "]]");
        AssertRefused(dir, State, "not a valid state file");
    }

    [KvmFact]
    public void A_memory_file_that_is_missing_is_named()
    {
        var dir = Spoiled("no-memory");
        File.Delete(Path.Combine(dir, Memory));
        AssertRefused(dir, Memory, "is missing");
    }

    [KvmFact]
    public void A_truncated_memory_file_is_named_with_its_size()
    {
        var dir = Spoiled("short-memory");
        using (var f = File.OpenWrite(Path.Combine(dir, Memory))) f.SetLength(1 << 20);
        AssertRefused(dir, Memory, "1048576 bytes", "truncated");
    }

    [KvmFact]
    public void A_changed_byte_in_a_memory_file_is_a_checksum_mismatch()
    {
        var dir = Spoiled("memory-byte");
        using (var f = File.OpenWrite(Path.Combine(dir, Memory)))
        {
            f.Position = SnapshotGuests.CounterAddress;
            f.WriteByte(0x77);
        }
        AssertRefused(dir, Memory, "checksum mismatch");
    }

    [KvmFact]
    public void A_directory_without_SHA256SUMS_is_an_unfinished_snapshot()
    {
        var dir = Spoiled("unfinished");
        File.Delete(Path.Combine(dir, Sums));
        AssertRefused(dir, Sums, "not a complete snapshot");
    }

    [KvmFact]
    public void A_directory_that_does_not_exist_is_named()
    {
        var dir = Path.Combine(good.Server.Dir, "cases", "never-written");
        AssertRefused(dir, "no snapshot directory", "never-written");
    }

    [KvmFact]
    public void A_memory_file_name_that_leaves_the_directory_is_refused_even_with_matching_checksums()
    {
        var dir = Spoiled("escape");
        // A real file at ../x with its checksum listed: only the name check stands between it and the guest.
        var outside = Path.Combine(dir, "..", "x");
        File.Copy(Path.Combine(dir, Memory), outside, overwrite: true);
        File.AppendAllText(Path.Combine(dir, Sums), $"{Sha(File.ReadAllBytes(outside))}  ../x\n");
        RewriteState(dir, json =>
        {
            Assert.Contains($"\"file\": \"{Memory}\"", json);
            return json.Replace($"\"file\": \"{Memory}\"", "\"file\": \"../x\"");
        });
        AssertRefused(dir, "memory[0].file '../x'");
    }

    [KvmFact]
    public async Task The_api_refuses_a_snapshot_path_outside_the_snapshot_directory_with_400_naming_it()
    {
        var (status, problem) = await good.Server.SnapshotAsync(good.VmId, "../out", resume: false);
        Assert.Equal(400, status);
        Assert.Contains(good.SnapshotRoot, (string)problem["detail"]!);
        Assert.False(Directory.Exists(Path.Combine(good.Server.GuestDir, "out")));
        (status, problem) = await good.Server.RestoreAsync("../guests");
        Assert.Equal(400, status);
        Assert.Contains(good.SnapshotRoot, (string)problem["detail"]!);
    }

    [KvmFact]
    public async Task The_api_refuses_a_snapshot_into_a_directory_that_is_not_empty()
    {
        var before = Directory.GetFiles(good.Directory).Select(File.ReadAllBytes).ToList();
        var (status, problem) = await good.Server.SnapshotAsync(good.VmId, GoodSnapshot.Name, resume: false);
        Assert.Equal(409, status);
        Assert.Contains("not empty", (string)problem["detail"]!);
        Assert.Equal(before, Directory.GetFiles(good.Directory).Select(File.ReadAllBytes).ToList()); // left as it was
    }

    [KvmFact]
    public async Task The_api_answers_422_with_the_reason_for_a_missing_or_corrupt_snapshot()
    {
        var (status, problem) = await good.Server.RestoreAsync("missing");
        Assert.Equal(422, status);
        Assert.Contains("no snapshot directory", (string)problem["detail"]!);

        var corrupt = good.CopyTo(Path.Combine(good.SnapshotRoot, "corrupt"));
        File.Delete(Path.Combine(corrupt, Sums));
        (status, problem) = await good.Server.RestoreAsync("corrupt");
        Assert.Equal(422, status);
        Assert.Contains("not a complete snapshot", (string)problem["detail"]!);
        Assert.Equal("corrupt", (string)problem["path"]!);
    }
}

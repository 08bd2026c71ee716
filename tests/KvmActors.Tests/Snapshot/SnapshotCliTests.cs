using KvmActors.Tests.Serve;
using KvmActors.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace KvmActors.Tests.Snapshot;

/// <summary>
/// Snapshot through a real <c>kvmactors serve</c> and restore with <c>kvmactors run --restore</c> in another
/// process, or inside the same server: the 4-vCPU counter guest carries on byte for byte where it was saved.
/// </summary>
[Collection(CounterProcessesCollection.Name)]
public sealed class SnapshotCliTests(ITestOutputHelper output)
{
    // About 2 s of run at ~20 lines/s; the snapshot is taken once 5 lines are out, leaving it well over a second to run.
    private const int Lines = 40, SnapshotAfter = 5;
    private static readonly TimeSpan RunLimit = TimeSpan.FromSeconds(60);

    private static string SnapshotDir(ServeServer s, string name) => Path.Combine(s.GuestDir, "snapshots", name);

    /// <summary>The 4-vCPU counter of <paramref name="lines"/> lines, snapshotted into <paramref name="path"/> once it printed a few; its id and the answer.</summary>
    private static async Task<(string Id, System.Text.Json.Nodes.JsonObject Snapshot)> SnapshotMidRunAsync(ServeServer s, int lines, string path, bool resume)
    {
        var id = await s.CreateCounterAsync(SnapshotGuests.Overrides(lines, CounterServe.SlowDelay));
        await s.WaitLinesAsync(id, SnapshotAfter);
        var (status, snap) = await s.SnapshotAsync(id, path, resume);
        Assert.True(status == 200, snap.ToJsonString());
        Assert.Equal(resume ? "running" : "paused", (string)snap["state"]!);
        return (id, snap);
    }

    [KvmFact]
    public async Task A_snapshot_taken_mid_run_through_serve_runs_on_in_a_new_process_to_the_same_bytes()
    {
        using var s = ServeServer.Start();
        var (id, snap) = await SnapshotMidRunAsync(s, Lines, "snap1", resume: false);
        var before = await s.ConsoleAsync(id);
        Assert.Equal((long)snap["consoleOffset"]!, before.Length);
        Assert.DoesNotContain("done", before); // mid-run: the guest had not finished

        // The server stops (its VM with it); the snapshot directory stays.
        Assert.Equal(0, s.Terminate());
        var restored = Kvmactors.Run(RunLimit, "run", "--restore", SnapshotDir(s, "snap1"));

        Assert.True(restored.ExitCode == SnapshotGuests.DoneStatus, restored.Stderr);
        Assert.Equal(SnapshotGuests.CounterOutput(Lines), before + restored.Stdout);
        output.WriteLine($"snapshot after {before.Length} console bytes: {snap.ToJsonString()}; restored run {restored.Elapsed.TotalSeconds:F1} s");
    }

    [KvmFact]
    public async Task A_snapshot_with_resume_gives_two_identical_continuations_the_source_and_the_restored_run()
    {
        using var s = ServeServer.Start();
        var (id, snap) = await SnapshotMidRunAsync(s, Lines, "live", resume: true);
        var offset = (int)(long)snap["consoleOffset"]!;

        // The restored copy runs in its own process while the source runs on to its end.
        var restoring = Task.Run(() => Kvmactors.Run(RunLimit, "run", "--restore", SnapshotDir(s, "live")));
        var source = await s.WaitEndedAsync(id);
        var restored = await restoring;

        Assert.Equal(SnapshotGuests.DoneStatus, CounterServe.ExitStatus(source));
        var whole = await s.ConsoleAsync(id);
        Assert.Equal(SnapshotGuests.CounterOutput(Lines), whole);
        Assert.InRange(offset, SnapshotAfter * SnapshotGuests.Line(1).Length, whole.Length - 1);
        Assert.True(restored.ExitCode == SnapshotGuests.DoneStatus, restored.Stderr);
        Assert.Equal(whole[offset..], restored.Stdout);
    }

    [KvmFact]
    public async Task Post_vms_with_restore_runs_the_snapshot_again_in_the_same_server_and_its_console_continues()
    {
        const int lines = 30;
        using var s = ServeServer.Start();
        var (id, _) = await SnapshotMidRunAsync(s, lines, "again", resume: false);
        var before = await s.ConsoleAsync(id);
        using (var stop = await s.Http.PostAsync($"vms/{id}/stop", null)) stop.EnsureSuccessStatusCode();

        var (created, vm) = await s.RestoreAsync("again", name: "counter-again");
        Assert.True(created == 201, vm.ToJsonString());
        var copy = (string)vm["id"]!;
        Assert.NotEqual(id, copy);
        Assert.Equal("counter-again", (string)vm["name"]!);
        var ended = await s.WaitEndedAsync(copy);

        Assert.Equal(SnapshotGuests.DoneStatus, CounterServe.ExitStatus(ended));
        Assert.Equal(SnapshotGuests.CounterOutput(lines), before + await s.ConsoleAsync(copy));
        Assert.Equal("", s.Stdout); // the restored console went to the API, not to the server's stdout
    }

    [KvmFact]
    public async Task The_snapshot_answer_reports_plausible_sizes_and_times_and_a_64_MiB_guest_that_touched_little_is_written_sparse()
    {
        const ulong ram = 64UL << 20;
        using var s = ServeServer.Start();
        var id = await s.CreateCounterAsync(SnapshotGuests.Overrides(2000, CounterServe.SlowDelay, ramSize: ram));
        await s.WaitLinesAsync(id, 2);

        var (status, snap) = await s.SnapshotAsync(id, "figures", resume: false);
        Assert.True(status == 200, snap.ToJsonString());
        output.WriteLine(snap.ToJsonString());
        Assert.Equal((long)ram, (long)snap["memoryBytes"]!);
        var data = (long)snap["dataBytes"]!;
        // The image, its variables and the ACPI tables: a few pages, not 64 MiB.
        Assert.InRange(data, 4096, 1L << 20);
        Assert.InRange((long)snap["stateBytes"]!, 1024, 1L << 20);
        var total = (double)snap["totalMs"]!;
        Assert.InRange(total, 0.1, 20_000);
        Assert.InRange((double)snap["pauseMs"]!, 0, total);
        Assert.InRange((double)snap["writeMs"]!, 0, total);
        Assert.Equal(SnapshotDir(s, "figures"), (string)snap["path"]!);

        var memory = Path.Combine(SnapshotDir(s, "figures"), "memory-0-ram.bin");
        Assert.Equal((long)ram, new FileInfo(memory).Length);
        var blocks = Kvmactors.Shell($"stat -c %b '{memory}'");
        Assert.InRange(long.Parse(blocks.Stdout.Trim()) * 512, data, data + (1L << 20)); // holes where the guest's RAM is zero
        Assert.True(File.Exists(Path.Combine(SnapshotDir(s, "figures"), "SHA256SUMS")));
    }
}

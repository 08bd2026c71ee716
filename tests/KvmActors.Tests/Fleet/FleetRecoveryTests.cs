using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Text.Json.Nodes;
using KvmActors.Tests.Serve;
using KvmActors.Tests.Snapshot;
using KvmActors.Tests.Support;
using Xunit;
using Xunit.Abstractions;
using static KvmActors.Tests.Fleet.FleetCluster;

namespace KvmActors.Tests.Fleet;

/// <summary>
/// A node that dies (SIGKILL) or is cut off (SIGSTOP): its VMs come back on the others, checkpointed ones from their
/// last checkpoint, the others booted again; three real kvm-host processes (<see cref="FleetCluster"/>), the one that
/// goes with room for 8 vCPUs so that every VM lands there, the others with 4.
/// </summary>
[Collection(CounterProcessesCollection.Name)]
public sealed class FleetRecoveryTests(ITestOutputHelper output)
{
    /// <summary>How long a VM may take to come back: detection (2 s), stable-after (2 s), the shard's move and the VM's start, on a loaded machine.</summary>
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(30);

    internal static string[] Counter(bool checkpointed) =>
        [.. SnapshotGuests.Overrides(lines: 999999, delay: 5000, vcpus: 1), .. checkpointed ? ["guest.fleet.checkpoint-interval = 1s"] : Array.Empty<string>()];

    /// <summary>The counter's output from console offset <paramref name="offset"/> on (a checkpoint may fall inside a line).</summary>
    internal static string Sequence(long offset, int length) =>
        string.Concat(Enumerable.Range(1, (int)((offset + length) / 12) + 1).Select(SnapshotGuests.Line)).Substring((int)offset, length);

    [KvmFact]
    public Task A_killed_node_s_checkpointed_vm_continues_from_its_checkpoint_and_its_plain_vm_reboots_and_ended_vms_stay_ended() => WithFleet(KillTest);

    /// <summary>Runs <paramref name="test"/> on a fresh three-node fleet; a failure shows every node's log.</summary>
    private async Task WithFleet(Func<FleetCluster, Task> test)
    {
        using var fleet = await StartRecoveryAsync(4, 4, 8);
        try { await test(fleet); }
        catch (Exception) { output.WriteLine(fleet.Logs()); throw; }
    }

    private async Task KillTest(FleetCluster fleet)
    {
        var via = fleet.Nodes[0];
        // An ended guest and a stopped one on the node that will die: neither may come back.
        var printer = (string)(await via.CreateAsync(ServeGuests.Printing("bye\n"), "printer"))["id"]!;
        await via.WaitStateAsync(printer, "ended");
        var stopped = await via.CreateAsync(ServeGuests.Spin, "stopped");
        Assert.Equal(2, fleet.IndexOf(stopped));
        using (var stop = await via.Http.PostAsync($"vms/{stopped["id"]}/stop", null)) Assert.Equal(HttpStatusCode.OK, stop.StatusCode);
        var saved = await via.CreateAsync(CounterServe.Conf, "checkpointed", Counter(checkpointed: true));
        var plain = await via.CreateAsync(CounterServe.Conf, "plain", Counter(checkpointed: false));
        Assert.Equal(2, fleet.IndexOf(saved));
        Assert.Equal(2, fleet.IndexOf(plain));
        var (savedId, plainId) = ((string)saved["id"]!, (string)plain["id"]!);

        // Two checkpoints at least, so the one restored is not the first, and the guest printed past it.
        var checkpoint = await UntilValue(async () =>
            (await via.GetVmAsync(savedId))["fleet"]?["checkpoint"] is { } c && (long)c["consoleOffset"]! >= 5 * 12 ? c : null, Bound, "a checkpoint past line 5");
        await via.WaitLinesAsync(plainId, 5);
        var owner = fleet.Nodes[2];
        var beforeSaved = await owner.ConsoleAsync(savedId);
        var beforePlain = await owner.ConsoleAsync(plainId);
        output.WriteLine($"checkpoint at offset {checkpoint["consoleOffset"]}; consoles before the kill: {beforeSaved.Length} and {beforePlain.Length} bytes");

        owner.Signal(9);
        var sw = Stopwatch.StartNew();
        var back = new ConcurrentDictionary<string, (TimeSpan At, JsonObject Vm)>();
        await Task.WhenAll(new[] { savedId, plainId }.Select(id => Task.Run(async () =>
        {
            var vm = await UntilValue(async () =>
            {
                var v = await via.GetVmAsync(id);
                return (string)v["state"]! == "running" && v["fleet"]?["recovery"] is not null ? v : null;
            }, Bound, $"VM {id} running again");
            back[id] = (sw.Elapsed, vm);
        })));
        output.WriteLine($"SIGKILL → running again: checkpointed {back[savedId].At.TotalMilliseconds:F0} ms, plain {back[plainId].At.TotalMilliseconds:F0} ms");

        // The checkpointed one goes on from its checkpoint: its console starts at the checkpoint's offset, with the
        // line after it, and runs on line after line; what it prints there is what the dead copy printed there.
        var recovery = back[savedId].Vm["fleet"]!["recovery"]!;
        Assert.Equal("restarted-from-checkpoint", (string)recovery["kind"]!);
        Assert.Equal(fleet.Addresses[2], (string)recovery["from"]!);
        Assert.Contains(fleet.IndexOf(back[savedId].Vm), new[] { 0, 1 });
        var offset = (long)recovery["consoleOffset"]!;
        Assert.True(offset >= (long)checkpoint["consoleOffset"]! && offset <= beforeSaved.Length, $"restored from offset {offset}");
        await Until(async () => (await ConsoleAsync(via, savedId)).Text.Length >= 3 * 12, Bound, "three lines after the checkpoint");
        var (first, text) = await ConsoleAsync(via, savedId);
        Assert.Equal(offset, first);
        Assert.Equal(Sequence(first, text.Length), text);
        var overlap = beforeSaved[(int)offset..];
        Assert.StartsWith(overlap[..Math.Min(overlap.Length, text.Length)], text);

        // The plain one booted again: its console starts over at offset 0 with line 1.
        var rebooted = back[plainId].Vm["fleet"]!["recovery"]!;
        Assert.Equal("rebooted", (string)rebooted["kind"]!);
        Assert.Contains(fleet.IndexOf(back[plainId].Vm), new[] { 0, 1 });
        var (plainFirst, plainText) = await ConsoleAsync(via, plainId);
        Assert.Equal(0, plainFirst);
        Assert.StartsWith(SnapshotGuests.Line(1), plainText);

        // The ended and the stopped VMs stay ended; the fleet's list has the two recovered ones on the survivors.
        var printerNow = await via.GetVmAsync(printer);
        Assert.Equal("ended", (string)printerNow["state"]!);
        Assert.Equal("Halted", (string)printerNow["end"]!["reason"]!);
        Assert.Equal("StoppedOnRequest", (string)(await via.GetVmAsync((string)stopped["id"]!))["end"]!["reason"]!);
        var all = await Json<JsonArray>(fleet.Nodes[1], "vms");
        Assert.Equal(new[] { plainId, savedId }.Order(StringComparer.Ordinal), all.Where(v => (string)v!["state"]! == "running").Select(v => (string)v!["id"]!).Order(StringComparer.Ordinal));
        Assert.DoesNotContain(all, v => (string)v!["id"]! == printer || (string)v!["id"]! == (string)stopped["id"]!);
    }

    [KvmFact]
    public Task A_node_cut_off_by_sigstop_is_downed_its_vm_comes_back_on_the_majority_and_on_sigcont_it_stops_without_writing_checkpoints() =>
        WithFleet(PartitionTest);

    private async Task PartitionTest(FleetCluster fleet)
    {
        var via = fleet.Nodes[0];
        var saved = await via.CreateAsync(CounterServe.Conf, "checkpointed", Counter(checkpointed: true));
        Assert.Equal(2, fleet.IndexOf(saved));
        var id = (string)saved["id"]!;
        await UntilValue(async () => (await via.GetVmAsync(id))["fleet"]?["checkpoint"], Bound, "a first checkpoint");

        // Every folder created in the shared checkpoint folder, with when: the zombie's would be named for it.
        var created = new ConcurrentQueue<(DateTime At, string Path)>();
        using var watcher = new FileSystemWatcher(fleet.CheckpointDir) { IncludeSubdirectories = true, EnableRaisingEvents = true };
        watcher.Created += (_, e) => created.Enqueue((DateTime.UtcNow, e.FullPath));
        var zombie = fleet.Nodes[2];
        var zombieTag = $"127.0.0.1-{fleet.Ports[2]}-";

        zombie.Signal(19); // SIGSTOP
        var sw = Stopwatch.StartNew();
        var back = await UntilValue(async () =>
        {
            var v = await via.GetVmAsync(id);
            return (string)v["state"]! == "running" && v["fleet"]?["recovery"] is not null ? v : null;
        }, Bound, "the VM running again on the majority");
        var recoveredIn = sw.Elapsed;
        Assert.Equal("restarted-from-checkpoint", (string)back["fleet"]!["recovery"]!["kind"]!);
        Assert.Contains(fleet.IndexOf(back), new[] { 0, 1 });
        // Downed by the split brain resolver: gone from the majority's members.
        await Until(async () => !(await Json<JsonArray>(via, "nodes")).Any(m => (string)m!["address"]! == fleet.Addresses[2]), Bound,
            "the stopped node removed from the members");
        output.WriteLine($"SIGSTOP → running again on {back["fleet"]!["node"]}: {recoveredIn.TotalMilliseconds:F0} ms");
        // The new owner checkpoints into the shared folder (named for itself).
        var ownerTag = $"127.0.0.1-{fleet.Ports[fleet.IndexOf(back)]}-";
        await Until(() => Task.FromResult(created.Any(c => c.Path.Contains(ownerTag))), Bound, "a checkpoint by the new owner");

        var thawed = DateTime.UtcNow;
        zombie.Signal(18); // SIGCONT
        var cont = Stopwatch.StartNew();
        // It finds it was frozen and pauses its copy at once, learns it was downed, and exits.
        await Until(() => Task.FromResult(zombie.Stderr.Contains("this node was frozen")), TimeSpan.FromSeconds(10), "the zombie pausing its VMs");
        var pausedIn = cont.Elapsed;
        Assert.True(zombie.Process.WaitForExit(Bound), "the zombie did not exit after SIGCONT");
        await Until(() => Task.FromResult(zombie.Stderr.Contains("this node was downed by the cluster")), TimeSpan.FromSeconds(5), "the zombie's last lines");
        var log = zombie.Stderr;
        output.WriteLine($"the zombie after SIGCONT:\n{log[log.IndexOf("this node was frozen", StringComparison.Ordinal)..]}");
        output.WriteLine($"SIGCONT → zombie pausing its VMs: within {pausedIn.TotalMilliseconds:F0} ms; exited (status {zombie.Process.ExitCode}) after {cont.Elapsed.TotalMilliseconds:F0} ms");
        Assert.Equal(1, zombie.Process.ExitCode);
        // A few more checkpoints by the owner, to see none of the zombie's among them.
        await Task.Delay(TimeSpan.FromSeconds(2));
        Assert.DoesNotContain(created, c => c.At >= thawed && c.Path.Contains(zombieTag));
        Assert.Contains(created, c => c.At >= thawed && c.Path.Contains(ownerTag));

        // The copy on the majority ran on throughout: line after line from its checkpoint.
        var (first, text) = await ConsoleAsync(via, id);
        Assert.Equal(Sequence(first, text.Length), text);
        Assert.Equal("running", (string)(await via.GetVmAsync(id))["state"]!);
    }
}

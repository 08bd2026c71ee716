using System.Diagnostics;
using System.Net;
using System.Text.Json.Nodes;
using KvmActors.Tests.Serve;
using KvmActors.Tests.Support;
using Xunit;
using Xunit.Abstractions;
using static KvmActors.Tests.Fleet.FleetCluster;

namespace KvmActors.Tests.Fleet;

/// <summary>
/// serve --journal: the fleet's SQLite journal, one file for all nodes. Three real kvm-host processes are killed all
/// at once (SIGKILL: the whole cluster down) and started again on the same ports with the same journal: every VM that
/// was running comes back, the checkpointed one from its checkpoint, the other booted again, each record saying
/// which; a deleted VM and a stopped one do not.
/// </summary>
[Collection(CounterProcessesCollection.Name)]
public sealed class FleetJournalTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(60);

    [Fact]
    public void A_journal_in_a_missing_folder_without_cluster_or_not_a_file_is_a_usage_error_naming_the_option_or_key()
    {
        var port = FreePorts(1)[0];
        var dir = Directory.CreateTempSubdirectory("kvmactors-journal-").FullName;
        try
        {
            var socket = Path.Combine(dir, "s.sock");
            var missing = Kvmactors.Run("serve", "--socket", socket, "--cluster", $"127.0.0.1:{port}", "--journal", Path.Combine(dir, "no", "j.db"));
            Assert.Equal(2, missing.ExitCode);
            Assert.Contains($"--journal '{Path.Combine(dir, "no", "j.db")}': the folder '{Path.Combine(dir, "no")}' does not exist", missing.Stderr);

            var alone = Kvmactors.Run("serve", "--socket", socket, "--journal", Path.Combine(dir, "j.db"));
            Assert.Equal(2, alone.ExitCode);
            Assert.Contains("needs --cluster", alone.Stderr);

            // From the host file: a folder is not a journal file; the error names the key and the file.
            var conf = Path.Combine(dir, "host.conf");
            File.WriteAllText(conf, $"kvmactors.fleet.journal = \"{dir}\"");
            var folder = Kvmactors.Run("serve", "--socket", socket, "--config", conf, "--cluster", $"127.0.0.1:{port}");
            Assert.Equal(2, folder.ExitCode);
            Assert.Contains($"kvmactors.fleet.journal = \"{dir}\" in {conf}: it is a folder", folder.Stderr);
            Assert.Equal("", missing.Stdout + alone.Stdout + folder.Stdout);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [KvmFact]
    public async Task After_the_whole_cluster_is_killed_and_started_again_with_its_journal_every_running_vm_comes_back_and_says_how()
    {
        var journalDir = Directory.CreateTempSubdirectory("kvmactors-journal-").FullName;
        var journal = Path.Combine(journalDir, "fleet.db");
        string[] Journal(int _) => ["--journal", journal];
        // Node 2 has room for 8 vCPUs, the others 4: every VM is placed there first.
        static string Host(int i, string checkpoints) => HostFile(i == 2 ? 8 : 4, checkpoints);
        FleetCluster? second = null;
        var first = await StartAsync(3, Host, Journal);
        try
        {
            var via = first.Nodes[0];
            var saved = (string)(await via.CreateAsync(CounterServe.Conf, "checkpointed", FleetRecoveryTests.Counter(checkpointed: true)))["id"]!;
            var plain = (string)(await via.CreateAsync(CounterServe.Conf, "plain", FleetRecoveryTests.Counter(checkpointed: false)))["id"]!;
            var deleted = (string)(await via.CreateAsync(ServeGuests.Spin, "deleted"))["id"]!;
            var stopped = (string)(await via.CreateAsync(ServeGuests.Spin, "stopped"))["id"]!;
            using (var d = await first.Nodes[1].Http.DeleteAsync($"vms/{deleted}")) Assert.Equal(HttpStatusCode.NoContent, d.StatusCode);
            using (var s = await first.Nodes[1].Http.PostAsync($"vms/{stopped}/stop", null)) Assert.Equal(HttpStatusCode.OK, s.StatusCode);
            var checkpoint = await UntilValue(async () =>
                (await via.GetVmAsync(saved))["fleet"]?["checkpoint"] is { } c && (long)c["consoleOffset"]! >= 3 * 12 ? c : null, Bound, "a checkpoint past line 3");
            await via.WaitLinesAsync(plain, 3);

            // The whole cluster down at once: nothing hands off, nothing leaves; only the journal (and the checkpoints) remain.
            foreach (var n in first.Nodes) n.Signal(9);
            foreach (var n in first.Nodes) Assert.True(n.Process.WaitForExit(TimeSpan.FromSeconds(10)));
            output.WriteLine($"killed all three; checkpoint at console offset {checkpoint["consoleOffset"]}; journal {new FileInfo(journal).Length} bytes");

            var clock = Stopwatch.StartNew();
            second = await StartAsync(3, Host, Journal, first.Ports, first.CheckpointDir);
            var formed = clock.Elapsed;
            var back = new Dictionary<string, JsonObject>();
            foreach (var id in new[] { saved, plain })
                back[id] = await UntilValue(async () =>
                {
                    using var r = await second.Nodes[1].Http.GetAsync($"vms/{id}");
                    if (r.StatusCode != HttpStatusCode.OK) return null;
                    var v = JsonNode.Parse(await r.Content.ReadAsStringAsync())!.AsObject();
                    return (string)v["state"]! == "running" && v["fleet"]?["recovery"] is not null ? v : null;
                }, Bound, $"VM {id} running again after the restart");
            output.WriteLine($"restart: cluster formed in {formed.TotalMilliseconds:F0} ms; both VMs running again {clock.Elapsed.TotalMilliseconds:F0} ms after the first start");

            var recovery = back[saved]["fleet"]!["recovery"]!;
            Assert.Equal("restarted-from-checkpoint", (string)recovery["kind"]!);
            var offset = (long)recovery["consoleOffset"]!;
            Assert.True(offset >= (long)checkpoint["consoleOffset"]!, $"restored from offset {offset}, older than the checkpoint seen at {checkpoint["consoleOffset"]}");
            await Until(async () => (await ConsoleAsync(second.Nodes[0], saved)).Text.Length >= 2 * 12, Bound, "two lines after the checkpoint");
            var (firstOffset, text) = await ConsoleAsync(second.Nodes[0], saved);
            Assert.Equal(offset, firstOffset);
            Assert.Equal(FleetRecoveryTests.Sequence(firstOffset, text.Length), text);
            Assert.Equal("rebooted", (string)back[plain]["fleet"]!["recovery"]!["kind"]!);
            await second.Nodes[2].WaitLinesAsync(plain, 1);
            var (plainFirst, plainText) = await ConsoleAsync(second.Nodes[2], plain);
            Assert.Equal(0, plainFirst);
            Assert.StartsWith(KvmActors.Tests.Snapshot.SnapshotGuests.Line(1), plainText);

            // The deleted VM and the stopped one stay gone: the fleet runs the two, once each.
            var all = await Json<JsonArray>(second.Nodes[2], "vms");
            Assert.Equal(new[] { plain, saved }.Order(StringComparer.Ordinal), all.Select(v => (string)v!["id"]!).Order(StringComparer.Ordinal));
            using (var gone = await second.Nodes[0].Http.GetAsync($"vms/{deleted}")) Assert.Equal(HttpStatusCode.NotFound, gone.StatusCode);
            Assert.All(second.Nodes, n => Assert.Equal("", n.Stdout));
        }
        catch (Exception)
        {
            output.WriteLine(first.Logs());
            if (second is not null) output.WriteLine(second.Logs());
            throw;
        }
        finally
        {
            second?.Dispose();
            first.Dispose();
            try { Directory.Delete(journalDir, recursive: true); } catch (IOException) { }
        }
    }
}

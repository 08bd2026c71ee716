using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using KvmActors.Tests.Serve;
using KvmActors.Tests.Snapshot;
using KvmActors.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace KvmActors.Tests.Fleet;

/// <summary>
/// Draining a node of three real <c>kvmactors serve --cluster</c> processes (each with 2 vCPUs of capacity) whose
/// 1-vCPU counter guests (hocon/guests/counter.conf) print a numbered sequence: the VMs move by live migration, their
/// shards follow them, and every console through any node reads as one uninterrupted run's.
/// </summary>
[Collection(CounterProcessesCollection.Name)]
public sealed class FleetDrainTests(ITestOutputHelper output)
{
    // About 9 lines a second each at the slow delay with the machine to itself: 120 lines outlast both drains here.
    private const int Lines = 120;
    private static readonly string[] Counter = [.. SnapshotGuests.Overrides(Lines, CounterServe.SlowDelay, vcpus: 1)];
    // The migration's capture waits kvmactors.vm.capture-timeout (10 s by default) for the vCPUs (nice 19) to hand over
    // their state: with four busy guests and three servers on two cores, 2 s (vm.stop-timeout, which it used to be) was seen to pass.
    private const string HostConf = "host { max-vcpus-total = 2 }";

    [KvmFact]
    public async Task Draining_a_node_moves_its_counters_to_the_nodes_with_room_their_consoles_read_as_one_run_and_a_drain_without_room_refuses()
    {
        using var fleet = await FleetCluster.StartAsync(3, HostConf);
        var nodes = fleet.Nodes;
        int[] exits;
        try
        {
            // Four 1-vCPU counters through node 0 on 3 × 2 vCPUs: by free vCPUs (then address) one node gets two.
            var ids = new List<string>();
            for (var i = 0; i < 4; i++) ids.Add(await nodes[0].CreateCounterAsync(Counter, $"counter-{i}"));
            var placed = await fleet.VmsAsync(nodes[0]);
            var drained = Enumerable.Range(0, 3).Single(n => placed.Values.Count(v => v == n) == 2);
            var others = Enumerable.Range(0, 3).Where(n => n != drained).ToArray();
            var moving = ids.Where(id => placed[id] == drained).ToList();
            foreach (var id in ids) await nodes[0].WaitLinesAsync(id, 3);

            // A follow through a node that is not the owner, running across the migration.
            var via = nodes[others[0]];
            var follow = Task.Run(async () =>
            {
                using var r = await via.Http.GetAsync($"vms/{moving[0]}/console?follow=true", HttpCompletionOption.ResponseHeadersRead);
                r.EnsureSuccessStatusCode();
                return Encoding.Latin1.GetString(await r.Content.ReadAsByteArrayAsync());
            });

            var createdAt = new Dictionary<string, string>();
            foreach (var id in moving) createdAt[id] = (string)(await nodes[0].GetVmAsync(id))["createdAt"]!;

            // The drain, asked through another node.
            var clock = Stopwatch.StartNew();
            using var drain = await nodes[others[1]].Http.PostAsync($"nodes/{fleet.HostPorts[drained]}/drain", null);
            var drainWall = clock.Elapsed;
            var answer = JsonNode.Parse(await drain.Content.ReadAsStringAsync())!.AsObject();
            output.WriteLine($"drain of {fleet.Addresses[drained]} (2 counters): {drainWall.TotalMilliseconds:F0} ms through the API: {answer.ToJsonString()}");
            Assert.True(drain.StatusCode == HttpStatusCode.OK, answer.ToJsonString());
            Assert.Equal(fleet.Addresses[drained], (string)answer["node"]!);
            Assert.Equal(2, (int)answer["migrated"]!);
            var moves = answer["vms"]!.AsArray().Select(m => m!.AsObject()).ToList();
            Assert.Equal(moving.Order(), moves.Select(m => (string)m["id"]!).Order());
            foreach (var m in moves)
            {
                Assert.Equal("migrated", (string)m["state"]!);
                Assert.Equal((string)m["id"]!, (string)m["targetId"]!); // it keeps its id
                Assert.InRange((double)m["downtimeMs"]!, 0.01, (double)m["totalMs"]!);
                Assert.NotNull(m["handoffMs"]); // its shard followed it
                output.WriteLine($"  {m["id"]} -> {m["to"]}: downtime {m["downtimeMs"]} ms, migration {m["totalMs"]} ms, shard handoff {m["handoffMs"]} ms");
            }
            // Each of the other nodes had one vCPU free: one VM each, none past host.max-vcpus-total.
            Assert.Equal(others.Select(n => fleet.Addresses[n]).Order(), moves.Select(m => (string)m["to"]!).Order());

            // Every node sees the drained node draining and empty, the VMs once each, on their new nodes.
            foreach (var n in nodes)
            {
                // Each node reads the capacities from its own replica: gossip may bring the last publication a moment later.
                await FleetProcessTests.Until(async () => (await fleet.NodesAsync(n)) is var l && (int)l[drained]["vms"]! == 0 && others.All(o => (int)l[o]["vms"]! == 2),
                    TimeSpan.FromSeconds(15), "the drained node's and the others' capacity published");
                var listed = await fleet.NodesAsync(n);
                Assert.True((bool)listed[drained]["draining"]!);
                Assert.Equal(0, (int)listed[drained]["vms"]!);
                Assert.Equal(2, (int)listed[drained]["freeVcpus"]!);
                // Each node's metrics, as its GET /metrics gives them: the moved VMs' copies are forgotten where they left.
                Assert.Equal(0, (double)listed[drained]["metrics"]!["kvmactors_vms{state=\"running\"}"]!);
                Assert.Equal(0, (double)listed[drained]["metrics"]!["kvmactors_vms{state=\"ended\"}"]!);
                foreach (var o in others)
                {
                    Assert.False((bool)listed[o]["draining"]!);
                    Assert.Equal(2, (int)listed[o]["vms"]!);
                    Assert.Equal(0, (int)listed[o]["freeVcpus"]!);
                    Assert.Equal(2, (double)listed[o]["metrics"]!["kvmactors_vms{state=\"running\"}"]!);
                }
                var vms = await fleet.VmsAsync(n);
                Assert.Equal(ids.Order(), vms.Keys.Order());
                foreach (var m in moves) Assert.Equal(fleet.IndexOf((string)m["to"]!), vms[(string)m["id"]!]);
            }
            var metrics = await nodes[others[0]].Http.GetStringAsync($"nodes/{fleet.HostPorts[others[1]]}/metrics");
            Assert.Contains("kvmactors_vms{state=\"running\"} 2", metrics);
            Assert.Contains("kvmactors_host_rss_bytes", metrics);
            // The moved VMs answer through the node they left, from where they run now, with the creation time they had.
            foreach (var id in moving)
            {
                var vm = await nodes[drained].GetVmAsync(id);
                Assert.Equal("running", (string)vm["state"]!);
                Assert.Equal(createdAt[id], (string)vm["createdAt"]!);
            }

            // vm list through a node that owns none of them: every VM of the fleet with its node.
            var list = await Task.Run(() => Kvmactors.Run(TimeSpan.FromSeconds(30), "vm", "--socket", nodes[drained].Socket, "list"));
            Assert.True(list.ExitCode == 0, list.Stderr);
            var rows = list.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Matches(@"^ID\s+NAME\s+STATE\s+VCPUS\s+MEMORY\s+UPTIME\s+EXITS\s+NODE$", rows[0]);
            var now = await fleet.VmsAsync(nodes[drained]);
            foreach (var id in ids) Assert.Contains(rows, r => r.StartsWith(id) && r.EndsWith(fleet.Addresses[now[id]]));
            Assert.Equal(5, rows.Length);

            // A drain with no room elsewhere (the drained node takes none, the third node is full) refuses each VM
            // with the reason, and they run on where they are.
            var full = others[1];
            var stay = ids.Where(id => now[id] == full).ToList();
            foreach (var id in stay) Assert.Equal("running", (string)(await nodes[full].GetVmAsync(id))["state"]!);
            using (var refused = await nodes[drained].Http.PostAsync($"nodes/{Uri.EscapeDataString(fleet.Addresses[full])}/drain", null))
            {
                var body = JsonNode.Parse(await refused.Content.ReadAsStringAsync())!.AsObject();
                output.WriteLine($"drain without room: {(int)refused.StatusCode} {body.ToJsonString()}");
                Assert.Equal(HttpStatusCode.Conflict, refused.StatusCode);
                Assert.Equal("Drain incomplete", (string)body["title"]!);
                Assert.Equal(2, (int)body["notMoved"]!);
                foreach (var m in body["vms"]!.AsArray())
                {
                    Assert.Equal("not-moved", (string)m!["state"]!);
                    Assert.Equal(429, (int)m["status"]!);
                    Assert.Contains("no kvm-host node has 1 vCPU(s) and a VM slot free", (string)m["reason"]!);
                    Assert.Contains($"{fleet.Addresses[others[0]]}: 0 of 2 vCPU(s) free", (string)m["reason"]!);
                }
            }
            foreach (var id in stay) Assert.Equal("running", (string)(await nodes[drained].GetVmAsync(id))["state"]!);
            Assert.Equal(now, await fleet.VmsAsync(nodes[full]));

            // The drained node takes no VM (the others are full: refused), until it is undrained; then it does again.
            using (var refused = await nodes[others[0]].PostCreateAsync(ServeGuests.Spin, "spin"))
                Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
            using (var undrain = await nodes[others[0]].Http.PostAsync($"nodes/{fleet.HostPorts[drained]}/undrain", null))
            {
                var body = JsonNode.Parse(await undrain.Content.ReadAsStringAsync())!;
                Assert.True(undrain.StatusCode == HttpStatusCode.OK, body.ToJsonString());
                Assert.False((bool)body["draining"]!);
            }
            // A majority has it when the undrain answers; every node's replica soon after (gossip).
            foreach (var n in nodes)
                await FleetProcessTests.Until(async () => !(bool)(await fleet.NodesAsync(n))[drained]["draining"]!, TimeSpan.FromSeconds(15), "the node undrained in every replica");
            using (var again = await nodes[drained].Http.PostAsync($"nodes/{fleet.HostPorts[drained]}/undrain", null))
            {
                Assert.Equal(HttpStatusCode.Conflict, again.StatusCode);
                Assert.Equal("Not draining", (string)JsonNode.Parse(await again.Content.ReadAsStringAsync())!["title"]!);
            }
            var spin = await nodes[others[0]].CreateAsync(ServeGuests.Spin, "spin");
            Assert.Equal(drained, fleet.IndexOf(spin));
            using (var delete = await nodes[others[1]].Http.DeleteAsync($"vms/{spin["id"]}")) Assert.Equal(HttpStatusCode.NoContent, delete.StatusCode);

            // Every counter's console, read through a node that does not own it, is one uninterrupted run's output.
            foreach (var id in ids)
            {
                var owner = now[id];
                var reader = nodes[(owner + 1) % 3];
                var ended = await reader.WaitEndedAsync(id, TimeSpan.FromSeconds(120));
                Assert.Equal(SnapshotGuests.DoneStatus, CounterServe.ExitStatus(ended));
                Assert.Equal(SnapshotGuests.CounterOutput(Lines), await reader.ConsoleAsync(id));
            }
            Assert.Equal(SnapshotGuests.CounterOutput(Lines), await follow.WaitAsync(TimeSpan.FromSeconds(30)));
        }
        finally
        {
            exits = await fleet.TerminateAsync();
        }
        Assert.Equal([0, 0, 0], exits);
        Assert.All(nodes, n => Assert.Equal("", n.Stdout));
    }

    [KvmFact]
    public async Task Calls_through_a_node_that_is_not_the_owner_answer_as_the_owner_and_drain_on_exit_moves_a_nodes_vms_before_it_leaves()
    {
        using var fleet = await FleetCluster.StartAsync(3, HostConf, i => i == 2 ? ["--drain-on-exit"] : []);
        var nodes = fleet.Nodes;
        int[] exits;
        try
        {
            // uart-echo echoes its input and ends at 'q'.
            var echo = (string)(await nodes[0].CreateAsync(ServeGuests.Example("uart-echo.conf"), "echo"))["id"]!;
            var owner = (await fleet.VmsAsync(nodes[0]))[echo];
            var via = nodes[(owner + 1) % 3];
            var third = (owner + 2) % 3;
            await via.WaitStateAsync(echo, "running");

            // Follow and console input through a non-owner.
            using var follow = await via.Http.GetAsync($"vms/{echo}/console?follow=true", HttpCompletionOption.ResponseHeadersRead);
            Assert.Equal(HttpStatusCode.OK, follow.StatusCode);
            Assert.Equal("0", follow.Headers.GetValues("X-Console-Start").Single());
            await using var stream = await follow.Content.ReadAsStreamAsync();
            using (var input = await via.Http.PostAsync($"vms/{echo}/console", new ByteArrayContent("hello "u8.ToArray())))
            {
                Assert.Equal(HttpStatusCode.OK, input.StatusCode);
                Assert.Equal(6, (int)JsonNode.Parse(await input.Content.ReadAsStringAsync())!["accepted"]!);
            }
            var seen = new StringBuilder();
            await ReadUntil(stream, seen, "hello ");

            // The report of a running VM: the owner's 409, through either.
            using (var early = await via.Http.GetAsync($"vms/{echo}/report"))
            using (var onOwner = await nodes[owner].Http.GetAsync($"vms/{echo}/report"))
            {
                Assert.Equal(HttpStatusCode.Conflict, early.StatusCode);
                Assert.Equal(await Problem(onOwner), await Problem(early));
            }

            // A snapshot through a non-owner lands in the owner's snapshot directory.
            var (snapStatus, snap) = await via.SnapshotAsync(echo, "through-fleet", resume: true);
            Assert.True(snapStatus == 200, snap.ToJsonString());
            Assert.Equal(echo, (string)snap["id"]!);
            Assert.Equal(6, (long)snap["consoleOffset"]!);
            Assert.True(Directory.Exists(Path.Combine(nodes[owner].GuestDir, "snapshots", "through-fleet")));
            var (badStatus, bad) = await via.SnapshotAsync(echo, "../outside", resume: true);
            Assert.Equal(400, badStatus);
            Assert.Contains("outside the snapshot directory", (string)bad["detail"]!);

            // Migrate through a non-owner, to a node named by HOST:PORT: the follow goes on, the VM keeps its id.
            var (moveStatus, moved) = await via.MigrateAsync(echo, fleet.HostPorts[third]);
            output.WriteLine($"migrate through a non-owner: {moved.ToJsonString()}");
            Assert.True(moveStatus == 200, moved.ToJsonString());
            Assert.Equal(fleet.Addresses[third], (string)moved["to"]!);
            Assert.Equal(echo, (string)moved["targetId"]!);
            Assert.Equal(third, (await fleet.VmsAsync(via))[echo]);
            var (refusedStatus, refusedMove) = await via.MigrateAsync(echo, "unix:/tmp/elsewhere.sock");
            Assert.Equal(400, refusedStatus);
            Assert.Contains("is not a member of the cluster", (string)refusedMove["detail"]!);

            // Input through the old owner (now a non-owner) reaches the VM where it runs now; the follow sees it and its end.
            using (await nodes[owner].Http.PostAsync($"vms/{echo}/console", new ByteArrayContent("world"u8.ToArray()))) { }
            await ReadUntil(stream, seen, "hello world");
            using (await nodes[owner].Http.PostAsync($"vms/{echo}/console", new ByteArrayContent("q"u8.ToArray()))) { }
            var buffer = new byte[256];
            int n;
            using (var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30)))
                while ((n = await stream.ReadAsync(buffer, cts.Token)) > 0) seen.Append(Encoding.Latin1.GetString(buffer, 0, n));
            Assert.Equal("hello world", seen.ToString());

            // The ended VM's report: the same through a non-owner as on its owner.
            var ended = await via.WaitEndedAsync(echo);
            Assert.Equal("GuestExit", (string)ended["end"]!["reason"]!);
            var report = JsonNode.Parse(await via.Http.GetStringAsync($"vms/{echo}/report"))!;
            Assert.Equal(JsonNode.Parse(await nodes[third].Http.GetStringAsync($"vms/{echo}/report"))!.ToJsonString(), report.ToJsonString());
            Assert.Equal(echo, (string)report["id"]!);

            // DELETE through a non-owner: gone on its owner too.
            using (var del = await via.Http.DeleteAsync($"vms/{echo}")) Assert.Equal(HttpStatusCode.NoContent, del.StatusCode);
            using (var gone = await nodes[third].Http.GetAsync($"vms/{echo}")) Assert.Equal(HttpStatusCode.NotFound, gone.StatusCode);

            // --drain-on-exit: a counter moved onto node 2, then node 2 gets SIGTERM; it drains before it leaves.
            var counter = await nodes[0].CreateCounterAsync(Counter, "counter");
            await nodes[0].WaitLinesAsync(counter, 1); // running (a VM still starting cannot migrate: 409)
            if ((await fleet.VmsAsync(nodes[0]))[counter] != 2)
            {
                var (s, m) = await nodes[0].MigrateAsync(counter, fleet.HostPorts[2]);
                Assert.True(s == 200, m.ToJsonString());
            }
            await nodes[0].WaitLinesAsync(counter, 3);
            var clock = Stopwatch.StartNew();
            Assert.Equal(0, nodes[2].Terminate(TimeSpan.FromSeconds(90)));
            output.WriteLine($"SIGTERM to exit of the --drain-on-exit node with one counter: {clock.ElapsedMilliseconds} ms");
            Assert.Contains("--drain-on-exit: 200", nodes[2].Stderr);
            var after = await fleet.VmsAsync(nodes[0]);
            Assert.Contains(after[counter], new[] { 0, 1 });
            var done = await nodes[1].WaitEndedAsync(counter, TimeSpan.FromSeconds(120));
            Assert.Equal(SnapshotGuests.DoneStatus, CounterServe.ExitStatus(done));
            Assert.Equal(SnapshotGuests.CounterOutput(Lines), await nodes[0].ConsoleAsync(counter));
            Assert.Equal(SnapshotGuests.CounterOutput(Lines), await nodes[1].ConsoleAsync(counter));
        }
        finally
        {
            exits = await fleet.TerminateAsync();
        }
        Assert.Equal([0, 0, 0], exits);
        Assert.All(nodes, n => Assert.Equal("", n.Stdout));
    }

    [Fact]
    public void Drain_on_exit_needs_a_kvm_host_cluster_node()
    {
        var alone = Kvmactors.Run(TimeSpan.FromSeconds(30), "serve", "--drain-on-exit");
        Assert.Equal(2, alone.ExitCode);
        Assert.Contains("--drain-on-exit needs --cluster", alone.Stderr);
        var api = Kvmactors.Run(TimeSpan.FromSeconds(30), "serve", "--drain-on-exit", "--cluster", "127.0.0.1:4053", "--role", "api");
        Assert.Equal(2, api.ExitCode);
        Assert.Contains("--role api node runs no VMs", api.Stderr);
        Assert.Equal("", alone.Stdout + api.Stdout);
    }

    private static async Task ReadUntil(Stream stream, StringBuilder seen, string text)
    {
        var buffer = new byte[256];
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        while (!seen.ToString().Contains(text))
        {
            var n = await stream.ReadAsync(buffer, cts.Token);
            Assert.NotEqual(0, n); // the stream must not end before the VM does
            seen.Append(Encoding.Latin1.GetString(buffer, 0, n));
        }
    }

    /// <summary>A problem answer's status, title and detail.</summary>
    private static async Task<string> Problem(HttpResponseMessage r)
    {
        var p = JsonNode.Parse(await r.Content.ReadAsStringAsync())!;
        return $"{(int)r.StatusCode} {p["title"]}: {p["detail"]}";
    }
}

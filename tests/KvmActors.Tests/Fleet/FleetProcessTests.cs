using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.Json.Nodes;
using KvmActors.Tests.Serve;
using KvmActors.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace KvmActors.Tests.Fleet;

/// <summary>
/// Three real <c>kvmactors serve --cluster</c> kvm-host processes on loopback ports, each with 2 vCPUs of capacity
/// (host.max-vcpus-total = 2), and an API-only node (--role api), their APIs on Unix sockets; driven through the HTTP API.
/// </summary>
public sealed class FleetProcessTests(ITestOutputHelper output)
{
    [KvmFact]
    public async Task Three_nodes_form_a_cluster_place_vms_by_capacity_and_answer_for_every_vm_from_any_node()
    {
        var ports = FreePorts(4);
        var seed = $"127.0.0.1:{ports[0]}";
        var clock = Stopwatch.StartNew();
        ServeServer Start(int i) => ServeServer.Start(dir => File.WriteAllText(Path.Combine(dir, "host.conf"), "host { max-vcpus-total = 2 }"),
            ["--config", "{dir}/host.conf", "--cluster", $"127.0.0.1:{ports[i]}", "--seed", seed, .. i == 3 ? new[] { "--role", "api" } : []]);
        // The seed first (its API answers once its remoting listens), so that the others' first join attempt reaches it:
        // a refused connection closes the gate to an address for akka.remote.retry-gate-closed-for (5 s).
        var first = Start(0);
        ServeServer[] all4 = [first, .. await Task.WhenAll(Enumerable.Range(1, 3).Select(i => Task.Run(() => Start(i))))];
        var nodes = all4[..3];
        var api = all4[3];
        int[] exits = [];
        try
        {
            var everyAddress = ports.Select(p => $"akka.tcp://kvmactors@127.0.0.1:{p}").ToArray();
            var addresses = everyAddress[..3];
            // Formed: every node sees four Up members, the kvm-host ones with their capacity published.
            foreach (var n in all4)
                await Until(async () =>
                {
                    var members = await Json<JsonArray>(n, "nodes");
                    return members.Count == 4 && members.All(m => (string)m!["status"]! == "Up" && (bool)m["reachable"]!)
                        && members.Count(m => m!["freeVcpus"] is not null) == 3;
                }, TimeSpan.FromSeconds(45), "four Up members, three with their capacity");
            output.WriteLine($"cluster formed (4 Up members, 3 with capacity, on every node) {clock.ElapsedMilliseconds} ms after the start of the processes");
            var listed = await Json<JsonArray>(api, "nodes");
            Assert.Equal(everyAddress.Order(StringComparer.Ordinal), listed.Select(m => (string)m!["address"]!));
            var byAddress = listed.ToDictionary(m => (string)m!["address"]!, m => m!);
            foreach (var a in addresses)
            {
                Assert.Equal(["kvm-host"], byAddress[a]["roles"]!.AsArray().Select(r => (string)r!));
                Assert.Equal(2, (int)byAddress[a]["maxVcpus"]!);
            }
            Assert.Equal(["api"], byAddress[everyAddress[3]]["roles"]!.AsArray().Select(r => (string)r!));
            Assert.Null(byAddress[everyAddress[3]]["freeVcpus"]); // runs no VMs
            Assert.True((bool)byAddress[everyAddress[3]]["self"]!);
            foreach (var n in all4) Assert.Matches(@"downing: Akka\.Cluster\.SBR\.SplitBrainResolverProvider, .*keep-majority", n.Stderr);

            // A guest that prints and halts, created through node 0: its console and record come from any node.
            var printer = await nodes[0].CreateAsync(ServeGuests.Printing("hello from the fleet\n"), "printer");
            var printerId = (string)printer["id"]!;
            var printerNode = Array.IndexOf(addresses, (string)printer["node"]!);
            Assert.True(printerNode >= 0, $"unknown node {printer["node"]}");
            var other = nodes[(printerNode + 1) % 3];
            await Until(async () => (string)(await other.GetVmAsync(printerId))["state"]! == "ended", TimeSpan.FromSeconds(20), "the printer ended");
            Assert.Equal("hello from the fleet\n", await other.ConsoleAsync(printerId));
            Assert.Equal("hello from the fleet\n", await api.ConsoleAsync(printerId));
            using (var r = await other.Http.GetAsync($"vms/{printerId}/console?offset=6"))
            {
                Assert.Equal("from the fleet\n", await r.Content.ReadAsStringAsync());
                Assert.Equal("6", r.Headers.GetValues("X-Console-Start").Single());
                Assert.Equal("21", r.Headers.GetValues("X-Console-Next-Offset").Single());
            }
            Assert.Equal("Halted", (string)(await other.GetVmAsync(printerId))["end"]!["reason"]!);

            // Six 1-vCPU guests through node 0 on 3 × 2 free vCPUs: the most-free node each time, so two on each.
            var spins = new List<(string Id, int Node)>();
            for (int i = 0; i < 6; i++)
            {
                var vm = await nodes[0].CreateAsync(ServeGuests.Spin, $"spin-{i}");
                spins.Add(((string)vm["id"]!, Array.IndexOf(addresses, (string)vm["node"]!)));
            }
            Assert.Equal([2, 2, 2], Enumerable.Range(0, 3).Select(n => spins.Count(s => s.Node == n)));
            // A seventh fits no node: refused with every node's free capacity as the reason.
            using (var refused = await nodes[0].PostCreateAsync(ServeGuests.Spin, "too-many"))
            {
                Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
                var problem = JsonNode.Parse(await refused.Content.ReadAsStringAsync())!;
                Assert.Contains("no kvm-host node has 1 vCPU(s)", (string)problem["reason"]!);
                foreach (var a in addresses) Assert.Contains($"{a}: 0 of 2 vCPU(s) free", (string)problem["reason"]!);
            }

            // The whole fleet from any node, each VM with its node.
            foreach (var n in all4)
            {
                var all = await Json<JsonArray>(n, "vms");
                foreach (var (id, node) in spins)
                    Assert.Contains(all, v => (string)v!["id"]! == id && (string)v["node"]! == addresses[node]);
                Assert.Contains(all, v => (string)v!["id"]! == printerId);
            }

            // Calls through a node that is not the owner reach the owner: show, pause, resume, stop.
            var (target, owner) = spins.First(s => s.Node == 2);
            var via = nodes[0];
            await Until(async () => (string)(await via.GetVmAsync(target))["state"]! == "running", TimeSpan.FromSeconds(20), "running");
            using (var p = await via.Http.PostAsync($"vms/{target}/pause", null)) Assert.Equal(HttpStatusCode.OK, p.StatusCode);
            Assert.Equal("paused", (string)(await nodes[owner].GetVmAsync(target))["state"]!);
            using (var p = await nodes[1].Http.PostAsync($"vms/{target}/resume", null)) Assert.Equal(HttpStatusCode.OK, p.StatusCode);
            Assert.Equal("running", (string)(await nodes[owner].GetVmAsync(target))["state"]!);
            using (var stop = await via.Http.PostAsync($"vms/{target}/stop", null))
            {
                Assert.Equal(HttpStatusCode.OK, stop.StatusCode);
                var stopped = JsonNode.Parse(await stop.Content.ReadAsStringAsync())!;
                Assert.Equal("ended", (string)stopped["state"]!);
                Assert.Equal("StoppedOnRequest", (string)stopped["end"]!["reason"]!);
            }
            Assert.Equal("ended", (string)(await nodes[owner].GetVmAsync(target))["state"]!);
            // Its vCPU is free again: the next create (here through the API-only node) goes to the owner, the only node with room.
            var again = await api.CreateAsync(ServeGuests.Spin, "again");
            Assert.Equal(addresses[owner], (string)again["node"]!);

            // An id the fleet never placed is not found (and starts no entity).
            using (var missing = await nodes[1].Http.GetAsync("vms/00000000")) Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
            output.WriteLine($"checks done {clock.ElapsedMilliseconds} ms after the start");
        }
        finally
        {
            // In parallel: each node leaves the cluster on SIGTERM, stopping its VMs.
            exits = await Task.WhenAll(all4.Select(n => Task.Run(() => n.Terminate())));
            output.WriteLine($"all stopped {clock.ElapsedMilliseconds} ms after the start");
            foreach (var n in all4) n.Dispose();
        }
        Assert.Equal([0, 0, 0, 0], exits);
        // Nothing but guest bytes on stdout, also while leaving the cluster.
        Assert.All(all4, n => Assert.Equal("", n.Stdout));
    }

    private static async Task<T> Json<T>(ServeServer s, string path) where T : JsonNode =>
        (T)JsonNode.Parse(await s.Http.GetStringAsync(path))!;

    private static async Task Until(Func<Task<bool>> condition, TimeSpan limit, string what)
    {
        var sw = Stopwatch.StartNew();
        while (!await condition())
        {
            if (sw.Elapsed > limit) throw new TimeoutException($"not within {limit}: {what}");
            await Task.Delay(100);
        }
    }

    /// <summary>Distinct free loopback ports (the listeners stay open until all are picked).</summary>
    private static int[] FreePorts(int count)
    {
        var listeners = Enumerable.Range(0, count).Select(_ => new TcpListener(IPAddress.Loopback, 0)).ToList();
        foreach (var l in listeners) l.Start();
        var ports = listeners.Select(l => ((IPEndPoint)l.LocalEndpoint).Port).ToArray();
        foreach (var l in listeners) l.Stop();
        return ports;
    }
}

using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;
using KvmActors.Tests.Serve;

namespace KvmActors.Tests.Fleet;

/// <summary>
/// Real <c>kvmactors serve --cluster</c> kvm-host processes on loopback ports, all checkpointing into one shared folder,
/// with the fast failure detection the recovery tests use (set in each node's host file, see <see cref="HostFile"/>).
/// </summary>
public sealed class RecoveryFleet : IDisposable
{
    /// <summary>
    /// The recovery tests' failure detection: heartbeats every 500 ms, unreachable after 2 s without one, downed after
    /// 2 s of stable membership. Fast, yet above what a loaded 2-core machine stalls a process for.
    /// </summary>
    public const string Downing = "heartbeat-interval = 500ms, acceptable-heartbeat-pause = 2s, stable-after = 2s";

    public ServeServer[] Nodes { get; }
    public string[] Addresses { get; }
    public int[] Ports { get; }
    public string CheckpointDir { get; }

    private RecoveryFleet(ServeServer[] nodes, int[] ports, string checkpointDir)
    {
        Nodes = nodes;
        Ports = ports;
        Addresses = ports.Select(p => $"akka.tcp://kvmactors@127.0.0.1:{p}").ToArray();
        CheckpointDir = checkpointDir;
    }

    public static string HostFile(int maxVcpus, string checkpointDir) => $$"""
        host { max-vcpus-total = {{maxVcpus}} }
        kvmactors.fleet { checkpoint-dir = "{{checkpointDir}}", {{Downing}} }
        """;

    /// <summary>One node per entry of <paramref name="maxVcpus"/> (its host.max-vcpus-total); node 0 is the seed (and the oldest).</summary>
    public static async Task<RecoveryFleet> StartAsync(params int[] maxVcpus)
    {
        var ports = FreePorts(maxVcpus.Length);
        var checkpoints = Directory.CreateTempSubdirectory("kvmactors-fleet-checkpoints-").FullName;
        var seed = $"127.0.0.1:{ports[0]}";
        ServeServer Start(int i) => ServeServer.Start(dir => File.WriteAllText(Path.Combine(dir, "host.conf"), HostFile(maxVcpus[i], checkpoints)),
            ["--config", "{dir}/host.conf", "--cluster", $"127.0.0.1:{ports[i]}", "--seed", seed]);
        // The seed first, so that the others' first join attempt reaches it (see FleetProcessTests).
        var nodes = new List<ServeServer> { Start(0) };
        try
        {
            nodes.AddRange(await Task.WhenAll(Enumerable.Range(1, maxVcpus.Length - 1).Select(i => Task.Run(() => Start(i)))));
            var cluster = new RecoveryFleet([.. nodes], ports, checkpoints);
            foreach (var n in cluster.Nodes)
                await Until(async () =>
                {
                    var members = await Json<JsonArray>(n, "nodes");
                    return members.Count == maxVcpus.Length && members.All(m => (string)m!["status"]! == "Up" && m["freeVcpus"] is not null);
                }, TimeSpan.FromSeconds(45), $"{maxVcpus.Length} Up members with their capacity");
            return cluster;
        }
        catch (Exception)
        {
            foreach (var n in nodes) n.Dispose();
            throw;
        }
    }

    /// <summary>The VM's node: "node" of a create's answer or a listing, "fleet.node" of its details (GET /vms/{id}).</summary>
    public int IndexOf(JsonNode vm) => Array.IndexOf(Addresses, (string?)(vm["node"] ?? vm["fleet"]?["node"]) ?? throw new ArgumentException($"no node in {vm}"));

    /// <summary>The console through <paramref name="via"/> from offset 0: the offset of its first byte kept (X-Console-First-Offset) and the text.</summary>
    public static async Task<(long First, string Text)> ConsoleAsync(ServeServer via, string id)
    {
        using var r = await via.Http.GetAsync($"vms/{id}/console?offset=0");
        r.EnsureSuccessStatusCode();
        return (long.Parse(r.Headers.GetValues("X-Console-First-Offset").Single()), Encoding.Latin1.GetString(await r.Content.ReadAsByteArrayAsync()));
    }

    public static async Task<T> Json<T>(ServeServer s, string path) where T : JsonNode =>
        (T)JsonNode.Parse(await s.Http.GetStringAsync(path))!;

    public static Task Until(Func<Task<bool>> condition, TimeSpan limit, string what) => FleetProcessTests.Until(condition, limit, what);

    /// <summary>Every node's stderr, for a failing test's output.</summary>
    public string Logs() => string.Join("\n", Nodes.Select((n, i) => $"--- node {i} ({Addresses[i]}):\n{n.Stderr}"));

    /// <summary>Polls (bounded) until <paramref name="read"/> gives a value; the value. An HTTP error (a 504 while the VM moves) is "not yet".</summary>
    public static async Task<T> UntilValue<T>(Func<Task<T?>> read, TimeSpan limit, string what) where T : class
    {
        var sw = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                if (await read() is { } value) return value;
            }
            catch (HttpRequestException) when (sw.Elapsed < limit) { }
            if (sw.Elapsed > limit) throw new TimeoutException($"not within {limit}: {what}");
            await Task.Delay(100);
        }
    }

    public static int[] FreePorts(int count) => FleetProcessTests.FreePorts(count);

    public void Dispose()
    {
        foreach (var n in Nodes)
        {
            if (!n.Process.HasExited) n.Signal(18); // SIGCONT: a node a test stopped must be able to exit
            n.Dispose();
        }
        try { Directory.Delete(CheckpointDir, recursive: true); } catch (IOException) { }
    }
}

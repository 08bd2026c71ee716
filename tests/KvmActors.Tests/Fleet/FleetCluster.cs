using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using KvmActors.Tests.Serve;

namespace KvmActors.Tests.Fleet;

/// <summary>
/// Real <c>kvmactors serve --cluster</c> kvm-host processes on loopback ports (their APIs on Unix sockets), each with
/// its host file; node 0 is the seed (and the oldest). All of them checkpoint into one shared folder
/// (<see cref="CheckpointDir"/>, used by the recovery tests' host files). Disposing stops every node that still runs.
/// </summary>
public sealed class FleetCluster : IDisposable
{
    /// <summary>
    /// The recovery tests' failure detection: heartbeats every 500 ms, unreachable after 2 s without one, downed after
    /// 2 s of stable membership. Fast, yet above what a loaded 2-core machine stalls a process for.
    /// </summary>
    public const string Downing = "heartbeat-interval = 500ms, acceptable-heartbeat-pause = 2s, stable-after = 2s";

    public ServeServer[] Nodes { get; }
    /// <summary>Each node's cluster address (akka.tcp://kvmactors@127.0.0.1:PORT), as the API names nodes.</summary>
    public string[] Addresses { get; }
    /// <summary>Each node's HOST:PORT, the short name POST /nodes/{node}/drain takes.</summary>
    public string[] HostPorts { get; }
    public int[] Ports { get; }
    public string CheckpointDir { get; }
    private readonly bool _ownsCheckpoints;

    private FleetCluster(ServeServer[] nodes, int[] ports, string checkpointDir, bool ownsCheckpoints)
    {
        Nodes = nodes;
        Ports = ports;
        HostPorts = ports.Select(p => $"127.0.0.1:{p}").ToArray();
        Addresses = HostPorts.Select(h => $"akka.tcp://kvmactors@{h}").ToArray();
        CheckpointDir = checkpointDir;
        _ownsCheckpoints = ownsCheckpoints;
    }

    /// <summary>A recovery test's host file: room for <paramref name="maxVcpus"/> vCPUs, the shared checkpoint folder, <see cref="Downing"/>.</summary>
    public static string HostFile(int maxVcpus, string checkpointDir) => $$"""
        host { max-vcpus-total = {{maxVcpus}} }
        kvmactors.fleet { checkpoint-dir = "{{checkpointDir}}", {{Downing}} }
        """;

    /// <summary>The recovery tests' fleet: one node per entry of <paramref name="maxVcpus"/> (its host.max-vcpus-total).</summary>
    public static Task<FleetCluster> StartRecoveryAsync(params int[] maxVcpus) =>
        StartAsync(maxVcpus.Length, (i, checkpoints) => HostFile(maxVcpus[i], checkpoints));

    /// <param name="extra">More serve arguments for node i.</param>
    public static Task<FleetCluster> StartAsync(int count, string hostConf, Func<int, string[]>? extra = null) =>
        StartAsync(count, (_, _) => hostConf, extra);

    /// <param name="hostConf">Node i's host file, given the shared checkpoint folder.</param>
    /// <param name="ports">The nodes' cluster ports (a restarted fleet: the ones it had); default: free ones.</param>
    /// <param name="checkpointDir">The shared checkpoint folder (a restarted fleet: the one it had; then not deleted on dispose).</param>
    public static async Task<FleetCluster> StartAsync(int count, Func<int, string, string> hostConf, Func<int, string[]>? extra = null,
        int[]? ports = null, string? checkpointDir = null)
    {
        ports ??= FreePorts(count);
        var checkpoints = checkpointDir ?? Directory.CreateTempSubdirectory("kvmactors-fleet-checkpoints-").FullName;
        var seed = $"127.0.0.1:{ports[0]}";
        ServeServer Start(int i) => ServeServer.Start(dir => File.WriteAllText(Path.Combine(dir, "host.conf"), hostConf(i, checkpoints)),
            ["--config", "{dir}/host.conf", "--cluster", $"127.0.0.1:{ports[i]}", "--seed", seed, .. extra?.Invoke(i) ?? []]);
        // The seed first (its API answers once its remoting listens), so that the others' first join attempt reaches it.
        var nodes = new List<ServeServer> { Start(0) };
        var rest = Enumerable.Range(1, count - 1).Select(i => Task.Run(() => Start(i))).ToList();
        try { await Task.WhenAll(rest); }
        catch (Exception)
        {
            foreach (var n in nodes) n.Dispose();
            foreach (var t in rest.Where(t => t.IsCompletedSuccessfully)) t.Result.Dispose();
            throw;
        }
        var cluster = new FleetCluster([.. nodes, .. rest.Select(t => t.Result)], ports, checkpoints, checkpointDir is null);
        try
        {
            // Formed: every node sees every member Up, each with its capacity published.
            foreach (var n in cluster.Nodes)
                await Until(async () =>
                {
                    var members = await Json<JsonArray>(n, "nodes");
                    return members.Count == count && members.All(m => (string)m!["status"]! == "Up" && m["freeVcpus"] is not null);
                }, TimeSpan.FromSeconds(60), $"{count} Up members with their capacity");
        }
        catch (Exception)
        {
            cluster.Dispose();
            throw;
        }
        return cluster;
    }

    public int IndexOf(string address)
    {
        var i = Array.IndexOf(Addresses, address);
        return i >= 0 ? i : throw new InvalidOperationException($"unknown node {address}");
    }

    /// <summary>The VM's node: "node" of a create's answer or a listing, "fleet.node" of its details (GET /vms/{id}).</summary>
    public int IndexOf(JsonNode vm) => Array.IndexOf(Addresses, (string?)(vm["node"] ?? vm["fleet"]?["node"]) ?? throw new ArgumentException($"no node in {vm}"));

    /// <summary>The fleet's VMs as node <paramref name="via"/> lists them: id → node index.</summary>
    public async Task<Dictionary<string, int>> VmsAsync(ServeServer via) =>
        (await Json<JsonArray>(via, "vms")).ToDictionary(v => (string)v!["id"]!, v => IndexOf((string)v!["node"]!));

    /// <summary>GET /nodes through <paramref name="via"/>, by node index.</summary>
    public async Task<JsonObject[]> NodesAsync(ServeServer via)
    {
        var listed = await Json<JsonArray>(via, "nodes");
        return Addresses.Select(a => listed.Single(m => (string)m!["address"]! == a)!.AsObject()).ToArray();
    }

    /// <summary>SIGTERM to every node that still runs, in parallel; their exit codes.</summary>
    public async Task<int[]> TerminateAsync() =>
        await Task.WhenAll(Nodes.Select(n => Task.Run(() => n.Process.HasExited ? n.Process.ExitCode : n.Terminate(TimeSpan.FromSeconds(60)))));

    /// <summary>The console through <paramref name="via"/> from offset 0: the offset of its first byte kept (X-Console-First-Offset) and the text.</summary>
    public static async Task<(long First, string Text)> ConsoleAsync(ServeServer via, string id)
    {
        using var r = await via.Http.GetAsync($"vms/{id}/console?offset=0");
        r.EnsureSuccessStatusCode();
        return (long.Parse(r.Headers.GetValues("X-Console-First-Offset").Single()), Encoding.Latin1.GetString(await r.Content.ReadAsByteArrayAsync()));
    }

    public static Task<T> Json<T>(ServeServer s, string path) where T : JsonNode => FleetProcessTests.Json<T>(s, path);

    public static Task Until(Func<Task<bool>> condition, TimeSpan limit, string what) => FleetProcessTests.Until(condition, limit, what);

    public static int[] FreePorts(int count) => FleetProcessTests.FreePorts(count);

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

    /// <summary>Every node's stderr, for a failing test's output.</summary>
    public string Logs() => string.Join("\n", Nodes.Select((n, i) => $"--- node {i} ({Addresses[i]}):\n{n.Stderr}"));

    public void Dispose()
    {
        foreach (var n in Nodes)
        {
            if (!n.Process.HasExited) n.Signal(18); // SIGCONT: a node a test stopped must be able to exit
            n.Dispose();
        }
        if (_ownsCheckpoints)
            try { Directory.Delete(CheckpointDir, recursive: true); } catch (IOException) { }
    }
}

/// <summary>A bounded wait measured with a stopwatch, for the figures the tests print.</summary>
internal static class Timed
{
    public static async Task<(T Result, TimeSpan Elapsed)> Run<T>(Func<Task<T>> f)
    {
        var sw = Stopwatch.StartNew();
        var r = await f();
        return (r, sw.Elapsed);
    }
}

using System.Diagnostics;
using System.Text.Json.Nodes;
using KvmActors.Tests.Serve;

namespace KvmActors.Tests.Fleet;

/// <summary>
/// Real <c>kvmactors serve --cluster</c> kvm-host processes on loopback ports (their APIs on Unix sockets), each
/// with the same host file; node 0 is the seed. Disposing stops every node that still runs.
/// </summary>
public sealed class FleetCluster : IDisposable
{
    public ServeServer[] Nodes { get; }
    /// <summary>Each node's cluster address (akka.tcp://kvmactors@127.0.0.1:PORT), as the API names nodes.</summary>
    public string[] Addresses { get; }
    /// <summary>Each node's HOST:PORT, the short name POST /nodes/{node}/drain takes.</summary>
    public string[] HostPorts { get; }

    private FleetCluster(ServeServer[] nodes, int[] ports)
    {
        Nodes = nodes;
        HostPorts = ports.Select(p => $"127.0.0.1:{p}").ToArray();
        Addresses = HostPorts.Select(h => $"akka.tcp://kvmactors@{h}").ToArray();
    }

    /// <param name="extra">More serve arguments for node i.</param>
    public static async Task<FleetCluster> StartAsync(int count, string hostConf, Func<int, string[]>? extra = null)
    {
        var ports = FleetProcessTests.FreePorts(count);
        var seed = $"127.0.0.1:{ports[0]}";
        ServeServer Start(int i) => ServeServer.Start(dir => File.WriteAllText(Path.Combine(dir, "host.conf"), hostConf),
            ["--config", "{dir}/host.conf", "--cluster", $"127.0.0.1:{ports[i]}", "--seed", seed, .. extra?.Invoke(i) ?? []]);
        // The seed first (its API answers once its remoting listens), so that the others' first join attempt reaches it.
        var first = Start(0);
        var rest = Enumerable.Range(1, count - 1).Select(i => Task.Run(() => Start(i))).ToList();
        try { await Task.WhenAll(rest); }
        catch (Exception)
        {
            first.Dispose();
            foreach (var t in rest.Where(t => t.IsCompletedSuccessfully)) t.Result.Dispose();
            throw;
        }
        var cluster = new FleetCluster([first, .. rest.Select(t => t.Result)], ports);
        try
        {
            // Formed: every node sees every member Up, each with its capacity published.
            foreach (var n in cluster.Nodes)
                await FleetProcessTests.Until(async () =>
                {
                    var members = await FleetProcessTests.Json<JsonArray>(n, "nodes");
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

    /// <summary>The fleet's VMs as node <paramref name="via"/> lists them: id → node index.</summary>
    public async Task<Dictionary<string, int>> VmsAsync(ServeServer via) =>
        (await FleetProcessTests.Json<JsonArray>(via, "vms")).ToDictionary(v => (string)v!["id"]!, v => IndexOf((string)v!["node"]!));

    /// <summary>GET /nodes through <paramref name="via"/>, by node index.</summary>
    public async Task<JsonObject[]> NodesAsync(ServeServer via)
    {
        var listed = await FleetProcessTests.Json<JsonArray>(via, "nodes");
        return Addresses.Select(a => listed.Single(m => (string)m!["address"]! == a)!.AsObject()).ToArray();
    }

    /// <summary>SIGTERM to every node that still runs, in parallel; their exit codes.</summary>
    public async Task<int[]> TerminateAsync() =>
        await Task.WhenAll(Nodes.Select(n => Task.Run(() => n.Process.HasExited ? n.Process.ExitCode : n.Terminate(TimeSpan.FromSeconds(60)))));

    public void Dispose()
    {
        foreach (var n in Nodes) n.Dispose();
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

using System.Net;
using KvmActors.Host.Serve;

namespace KvmActors.Host.Fleet;

/// <summary>
/// <c>kvmactors serve --cluster HOST:PORT --seed HOST:PORT … --role kvm-host|api</c>: this node's Akka.Remote
/// address, the seed nodes it joins through and its role.
/// </summary>
public sealed record FleetOptions(string Host, int Port, IReadOnlyList<string> Seeds, string Role)
{
    /// <summary>Runs VMs: hosts the VM shard region.</summary>
    public const string KvmHostRole = "kvm-host";
    /// <summary>Serves the API only (no /dev/kvm needed): a shard region proxy.</summary>
    public const string ApiRole = "api";
    /// <summary>Every node's actor system has this name: it is part of the cluster's addresses.</summary>
    public const string SystemName = "kvmactors";

    public string Address => $"akka.tcp://{SystemName}@{Host}:{Port}";

    /// <summary>This node's own API (<c>unix:PATH</c> or <c>http://HOST:PORT</c>): where other nodes send it migrations.</summary>
    public string? ApiEndpoint { get; init; }

    /// <summary>serve --drain-on-exit: on SIGTERM the node drains (kvmactors.fleet.drain.on-exit-timeout) before it leaves.</summary>
    public bool DrainOnExit { get; init; }

    /// <summary>serve --journal (or kvmactors.fleet.journal): the SQLite file of the fleet's journal (<see cref="FleetJournal"/>); null: none.</summary>
    public string? Journal { get; init; }

    /// <summary>Null when no --cluster was given (and none of its companions); the error text, for a usage error, otherwise.</summary>
    public static string? TryParse(string? cluster, IReadOnlyList<string> seeds, string? role, bool allowRemote, out FleetOptions? options)
    {
        options = null;
        if (cluster is null)
            return seeds.Count > 0 || role is not null ? "--seed and --role need --cluster HOST:PORT (this node's cluster address)" : null;
        if (!TryEndpoint(cluster, "--cluster", allowRemote, out var host, out var port, out var error)) return error;
        if (port == 0) return $"--cluster '{cluster}': give a port (other nodes find this one by it)";
        var seedAddresses = new List<string>();
        foreach (var s in seeds)
        {
            if (!TryEndpoint(s, "--seed", allowRemote: true, out var seedHost, out var seedPort, out error)) return error;
            seedAddresses.Add($"akka.tcp://{SystemName}@{seedHost}:{seedPort}");
        }
        // No seed: the node founds a cluster of its own (it is its own seed).
        options = new FleetOptions(host, port, [], role ?? KvmHostRole);
        options = options with { Seeds = seedAddresses.Count > 0 ? seedAddresses : [options.Address] };
        return null;
    }

    private static bool TryEndpoint(string text, string option, bool allowRemote, out string host, out int port, out string? error)
    {
        host = "";
        error = null;
        if (!ServeCommand.TryParseListen(text, out var address, out port) || text.StartsWith("tcp:"))
        {
            error = $"{option} '{text}': expected HOST:PORT (e.g. 127.0.0.1:4053)";
            return false;
        }
        if (!IPAddress.IsLoopback(address) && !allowRemote)
        {
            error = $"{option} '{text}': {address} is not a loopback address; cluster traffic has no authentication, so add --allow-remote to mean it";
            return false;
        }
        host = address.ToString();
        return true;
    }
}

using Akka.Actor;
using KvmActors.Host.Serve;

namespace KvmActors.Host.Fleet;

/// <summary>
/// The cluster settings recovery needs: remembered entities (a dead node's shards start again on the others, and
/// with them its VMs' entities) kept in Distributed Data, so no database is needed, and the failure detector and
/// split brain resolver timings from <c>kvmactors.fleet</c>.
/// </summary>
public static class FleetRecoverySetup
{
    public static string Hocon(Akka.Configuration.Config hostRuntime)
    {
        var s = RecoverySettings.FromHostConfig(hostRuntime, snapshotDir: ".");
        static string Ms(TimeSpan t) => $"{(long)t.TotalMilliseconds}ms";
        // durable.keys = []: the remembered entities live in memory on every node (replicated), not in LMDB files;
        // they outlive any node but not the whole cluster.
        return $$"""
            akka.cluster.sharding {
              remember-entities = on
              remember-entities-store = ddata
              state-store-mode = ddata
              distributed-data.durable.keys = []
            }
            akka.cluster.failure-detector {
              heartbeat-interval = {{Ms(s.HeartbeatInterval)}}
              acceptable-heartbeat-pause = {{Ms(s.AcceptableHeartbeatPause)}}
            }
            akka.cluster.split-brain-resolver.stable-after = {{Ms(s.StableAfter)}}
            """;
    }

    /// <summary>The kvm-host node's actors for recovery: the freeze guard.</summary>
    public static void Start(ActorSystem system, Func<VmHost> host) =>
        system.ActorOf(FleetFreezeGuard.Props(host, RecoverySettings.From(system.Settings.Config, ".")), FleetFreezeGuard.Name);
}

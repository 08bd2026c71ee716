using Akka;
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
    /// <param name="journal">serve --journal's file: the coordinator's state and the remembered entities are kept there (<see cref="FleetJournal"/>).</param>
    public static string Hocon(Akka.Configuration.Config hostRuntime, string? journal = null)
    {
        var s = RecoverySettings.FromHostConfig(hostRuntime, snapshotDir: ".");
        static string Ms(TimeSpan t) => $"{(long)t.TotalMilliseconds}ms";
        // Without a journal, durable.keys = []: the remembered entities live in memory on every node (replicated), not
        // in LMDB files; they outlive any node but not the whole cluster. With one they are events in the journal.
        var store = journal is null
            ? "remember-entities-store = ddata\n  state-store-mode = ddata"
            : "remember-entities-store = eventsourced\n  state-store-mode = persistence";
        return $$"""
            {{FleetJournal.InUseKey}} = "{{journal?.Replace("\\", "\\\\").Replace("\"", "\\\"") ?? ""}}"
            akka.cluster.sharding {
              remember-entities = on
              {{store}}
              distributed-data.durable.keys = []
            }
            akka.cluster.failure-detector {
              heartbeat-interval = {{Ms(s.HeartbeatInterval)}}
              acceptable-heartbeat-pause = {{Ms(s.AcceptableHeartbeatPause)}}
            }
            akka.cluster.split-brain-resolver.stable-after = {{Ms(s.StableAfter)}}
            """;
    }

    /// <summary>Set when the cluster downed this node (the process then exits 1: start it again to rejoin as a new incarnation).</summary>
    public static bool Downed { get; private set; }

    /// <summary>
    /// The kvm-host node's recovery parts: the freeze guard, and a node downed by the cluster stopping its VMs first
    /// thing in its coordinated shutdown (they run elsewhere by now), before the actor system and the VMs' actors go.
    /// </summary>
    public static void Start(ActorSystem system, Func<VmHost> host)
    {
        system.ActorOf(FleetFreezeGuard.Props(host, RecoverySettings.From(system.Settings.Config, ".")), FleetFreezeGuard.Name);
        var shutdown = CoordinatedShutdown.Get(system);
        shutdown.AddTask(CoordinatedShutdown.PhaseBeforeServiceUnbind, "kvmactors-stop-vms-when-downed", async () =>
        {
            if (shutdown.ShutdownReason is CoordinatedShutdown.ClusterDowningReason)
            {
                Downed = true;
                Serilog.Log.Warning("this node was downed by the cluster: stopping its VMs (they run on other nodes now) and exiting");
                await host().StopAllAsync(TimeSpan.FromSeconds(5));
            }
            return Done.Instance;
        });
    }
}

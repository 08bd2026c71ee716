using Akka.Actor;
using Akka.Cluster.Hosting;
using Akka.Cluster.Hosting.SBR;
using Akka.Cluster.Sharding;
using Akka.Hosting;
using Akka.Remote.Hosting;
using KvmActors.Host.Serve;
using Microsoft.Extensions.DependencyInjection;
using Serilog;

namespace KvmActors.Host.Fleet;

/// <summary>Turns a serve into a cluster node (serve --cluster): Akka.Remote, Akka.Cluster with the split brain resolver, the VM shard region.</summary>
public static class FleetSetup
{
    /// <summary>The shard region's type name (the same on every node).</summary>
    public const string TypeName = "vm";

    public static void AddServices(IServiceCollection services, FleetOptions options)
    {
        services.AddSingleton(new FleetRuntime(options));
        services.AddRouting(r => r.SetParameterPolicy<RemoteVmConstraint>(FleetApi.RemoteVm));
        services.AddRouting(r => r.SetParameterPolicy<FollowConstraint>(FleetRouting.Follow));
    }

    /// <param name="hostRuntime">The host file's <c>kvmactors { }</c> block: the fleet's failure detection (<see cref="FleetRecoverySetup"/>).</param>
    public static void AddToAkka(AkkaConfigurationBuilder akka, FleetOptions options, IServiceProvider services, Akka.Configuration.Config? hostRuntime = null)
    {
        akka.WithRemoting(new RemoteOptions { HostName = options.Host, Port = options.Port })
            .WithClustering(new ClusterOptions
            {
                Roles = [options.Role],
                SeedNodes = [.. options.Seeds],
                // Keep-majority: on a partition the side with more nodes stays and the other downs itself, so a VM's
                // shard is never owned on both sides (two copies of a guest); it needs no fixed cluster size (unlike
                // static-quorum) and does not hang everything on one node (keep-oldest).
                SplitBrainResolver = new KeepMajorityOption(),
            })
            // Passivation off: stopping an idle entity would not stop its VM, but losing the entity loses its routing.
            // Remoting logs its last lines after the loggers stopped, through the minimal logger, whatever
            // stdout-loglevel says: that logger writes to stderr here, since stdout carries guest bytes only.
            .AddHocon($$"""
                akka.cluster.sharding.passivate-idle-entity-after = off
                # The rebalance only hands off the shards of VMs that moved by live migration (FleetDrain.cs): checked this often.
                akka.cluster.sharding.rebalance-interval = 2s
                akka.stdout-logger-class = "{{typeof(StderrMinimalLogger).AssemblyQualifiedName}}"
                """, HoconAddMode.Prepend)
            .AddHocon(FleetRecoverySetup.Hocon(hostRuntime ?? Akka.Configuration.Config.Empty, options.Journal), HoconAddMode.Prepend)
            ;
        if (options.Journal is { } journal) FleetJournal.AddToAkka(akka, journal);
        akka.WithActors((system, registry) =>
            {
                var settings = FleetSettings.From(system.Settings.Config);
                var hostsVms = options.Role == FleetOptions.KvmHostRole;
                VmHost Host() => services.GetRequiredService<VmHost>();
                system.ActorOf(FleetNodeActor.Props(Host, settings, hostsVms), FleetNodeActor.Name);
                if (hostsVms) FleetRecoverySetup.Start(system, Host);
                var sharding = ClusterSharding.Get(system);
                var extractor = new FleetMessageExtractor();
                var region = hostsVms
                    ? sharding.Start(TypeName, id => VmEntity.Props(Host, id), ClusterShardingSettings.Create(system).WithRole(FleetOptions.KvmHostRole),
                        extractor, new FleetAllocationStrategy(system, settings.ConsistencyTimeout), PoisonPill.Instance)
                    : sharding.StartProxy(TypeName, FleetOptions.KvmHostRole, extractor);
                services.GetRequiredService<FleetRuntime>().Attach(system, region, settings);
                if (hostsVms)
                    system.ActorOf(FleetDrainActor.Props(services.GetRequiredService<FleetRuntime>(), Host, settings.Drain,
                        options.ApiEndpoint), FleetDrainActor.Name);
                var c = system.Settings.Config;
                Log.Information("kvmactors serve: fleet node {Address} ({Role}) joining through {Seeds}; downing: {Provider}, {Strategy}",
                    options.Address, options.Role, string.Join(", ", options.Seeds), c.GetString("akka.cluster.downing-provider-class"),
                    c.GetString("akka.cluster.split-brain-resolver.active-strategy"));
            });
    }
}

/// <summary>Akka's last-resort logger (akka.stdout-logger-class), on stderr.</summary>
public sealed class StderrMinimalLogger : Akka.Event.MinimalLogger
{
    protected override void Log(object message) => Console.Error.WriteLine(message);
}

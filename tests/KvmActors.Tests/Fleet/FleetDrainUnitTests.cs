using System.Collections.Immutable;
using Akka.Actor;
using Akka.Cluster;
using Akka.TestKit.Xunit2;
using KvmActors.Host.Fleet;
using Xunit;
using Xunit.Abstractions;

namespace KvmActors.Tests.Fleet;

/// <summary>The drain's parts that need no processes: placement skips draining nodes; metrics samples.</summary>
public sealed class FleetDrainPlacementTests
{
    private static NodeCapacity Free(int vcpus, bool draining = false) => new(0, 10, vcpus, 8, 1000, 1000, draining);

    [Fact]
    public void A_draining_node_is_never_chosen_however_much_it_has_free()
    {
        Assert.Equal("b", FleetPlacement.Choose([("a", Free(8, draining: true)), ("b", Free(1))], 1, 1).Node);
        var none = FleetPlacement.Choose([("a", Free(8, draining: true))], 1, 1);
        Assert.Null(none.Node);
        Assert.Equal(503, none.Status);
        Assert.Contains("not draining", none.Reason);
    }

    [Fact]
    public void Metrics_samples_are_read_from_the_prometheus_text_by_name_and_labels()
    {
        var samples = FleetRouting.Samples("# HELP kvmactors_vms VMs by state.\n# TYPE kvmactors_vms gauge\nkvmactors_vms{state=\"running\"} 2\nkvmactors_host_rss_bytes 1.5e+08\n\n");
        Assert.Equal(2, (double)samples["kvmactors_vms{state=\"running\"}"]!);
        Assert.Equal(1.5e8, (double)samples["kvmactors_host_rss_bytes"]!);
        Assert.Equal(2, samples.Count);
    }
}

/// <summary>The allocation strategy's rebalance in a single-node cluster, with a second actor system standing for another node's region.</summary>
public sealed class FleetDrainRebalanceTests(ITestOutputHelper output) : TestKit(FleetAllocationStrategyTests.Remote("cluster"), output: output)
{
    [Fact]
    public async Task Only_the_shard_of_a_vm_moved_by_live_migration_is_handed_off_and_only_to_a_node_with_a_region()
    {
        var cluster = Cluster.Get(Sys);
        await cluster.JoinAsync(cluster.SelfAddress);
        using var other = ActorSystem.Create("other", FleetAllocationStrategyTests.Remote("remote"));
        other.ActorOf(Props.Empty, "region");
        var otherAddress = ((ExtendedActorSystem)other).Provider.DefaultAddress;
        var remoteRegion = await Sys.ActorSelection(new RootActorPath(otherAddress) / "user" / "region").ResolveOne(TimeSpan.FromSeconds(10));
        var localRegion = CreateTestProbe().Ref;
        var allocations = ImmutableDictionary<IActorRef, IImmutableList<string>>.Empty
            .Add(localRegion, ImmutableList.Create("moved", "stays", "to-nowhere", "in-progress")).Add(remoteRegion, ImmutableList.Create("arrived"));
        var strategy = new FleetAllocationStrategy(Sys, TimeSpan.FromSeconds(3));
        Assert.Empty(await strategy.Rebalance(allocations, ImmutableHashSet<string>.Empty));

        var there = otherAddress.ToString();
        await FleetRuntime.Write(Sys, FleetDrainKeys.Moves, "moved", there, TimeSpan.FromSeconds(3));
        await FleetRuntime.Write(Sys, FleetDrainKeys.Moves, "in-progress", there, TimeSpan.FromSeconds(3));
        await FleetRuntime.Write(Sys, FleetDrainKeys.Moves, "arrived", there, TimeSpan.FromSeconds(3)); // already on its new node
        await FleetRuntime.Write(Sys, FleetDrainKeys.Moves, "to-nowhere", "akka.tcp://kvmactors@127.0.0.1:1", TimeSpan.FromSeconds(3));
        Assert.Equal(["moved"], await strategy.Rebalance(allocations, ImmutableHashSet.Create("in-progress")));
        await other.Terminate();
    }
}

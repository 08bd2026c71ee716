using System.Collections.Immutable;
using Akka.Actor;
using Akka.Cluster;
using Akka.Configuration;
using Akka.TestKit.Xunit2;
using KvmActors.Host.Fleet;
using KvmActors.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace KvmActors.Tests.Fleet;

/// <summary>The placement choice (most free vCPUs, then memory, never past a limit) and the usage errors of serve --cluster.</summary>
public sealed class FleetPlacementTests
{
    private static NodeCapacity Free(int vcpus, ulong memory, int vms = 0, int maxVms = 10) => new(vms, maxVms, vcpus, 8, memory, 1UL << 30);

    [Fact]
    public void The_node_with_the_most_free_vcpus_wins_then_the_most_free_memory()
    {
        var nodes = new[] { ("a", Free(2, 500)), ("b", Free(4, 100)), ("c", Free(4, 200)) };
        Assert.Equal("c", FleetPlacement.Choose(nodes, 1, 100).Node);
        // c lacks the memory: b is next by vCPUs (a has more memory, but fewer vCPUs).
        Assert.Equal("b", FleetPlacement.Choose([("a", Free(2, 500)), ("b", Free(4, 300)), ("c", Free(4, 200))], 1, 250).Node);
        // Equal capacity: the lowest address, so the choice does not depend on the order of the list.
        Assert.Equal("a", FleetPlacement.Choose([("b", Free(2, 100)), ("a", Free(2, 100))], 1, 1).Node);
    }

    [Fact]
    public void A_vm_that_fits_no_node_is_refused_with_each_nodes_free_capacity()
    {
        var vcpus = FleetPlacement.Choose([("a", Free(1, 1000)), ("b", Free(2, 1000, vms: 10))], 2, 10);
        Assert.Null(vcpus.Node);
        Assert.Equal(429, vcpus.Status);
        Assert.Contains("no kvm-host node has 2 vCPU(s) and a VM slot free", vcpus.Reason);
        Assert.Contains("a: 1 of 8 vCPU(s) free, 1000 of 1073741824 bytes free, 0 of 10 VMs", vcpus.Reason);
        Assert.Contains("b: 2 of 8 vCPU(s) free, 1000 of 1073741824 bytes free, 10 of 10 VMs", vcpus.Reason);

        var memory = FleetPlacement.Choose([("a", Free(4, 1000)), ("b", Free(4, 2000))], 1, 4096);
        Assert.Null(memory.Node);
        Assert.Equal(507, memory.Status);
        Assert.Contains("no kvm-host node has 4096 bytes of guest RAM free", memory.Reason);

        Assert.Equal(503, FleetPlacement.Choose([], 1, 1).Status);
    }

    [Fact]
    public void Cluster_options_are_checked_like_listen()
    {
        var remote = Kvmactors.Run(TimeSpan.FromSeconds(30), "serve", "--cluster", "10.1.2.3:4053");
        Assert.Equal(2, remote.ExitCode);
        Assert.Contains("--cluster '10.1.2.3:4053': 10.1.2.3 is not a loopback address", remote.Stderr);
        Assert.Contains("--allow-remote", remote.Stderr);
        Assert.Equal("", remote.Stdout);
        var alone = Kvmactors.Run(TimeSpan.FromSeconds(30), "serve", "--seed", "127.0.0.1:4053");
        Assert.Equal(2, alone.ExitCode);
        Assert.Contains("--seed and --role need --cluster", alone.Stderr);
        var noPort = Kvmactors.Run(TimeSpan.FromSeconds(30), "serve", "--cluster", "127.0.0.1:0");
        Assert.Equal(2, noPort.ExitCode);
        Assert.Contains("give a port", noPort.Stderr);
        var role = Kvmactors.Run(TimeSpan.FromSeconds(30), "serve", "--cluster", "127.0.0.1:4053", "--role", "storage");
        Assert.Equal(2, role.ExitCode);
        Assert.Contains("storage", role.Stderr);
    }
}

/// <summary>The allocation strategy in a single-node cluster, with a second actor system standing for another node's region.</summary>
public sealed class FleetAllocationStrategyTests(ITestOutputHelper output) : TestKit(Remote("cluster"), output: output)
{
    internal static Config Remote(string provider) => ConfigurationFactory.ParseString($"""
        akka.actor.provider = {provider}
        akka.remote.dot-netty.tcp.hostname = 127.0.0.1
        akka.remote.dot-netty.tcp.port = 0
        akka.loglevel = INFO
        akka.log-dead-letters = off
        """);

    [Fact]
    public async Task Each_vm_goes_to_the_region_of_the_node_its_placement_names_and_nothing_is_rebalanced()
    {
        var cluster = Cluster.Get(Sys);
        await cluster.JoinAsync(cluster.SelfAddress);
        using var other = ActorSystem.Create("other", Remote("remote"));
        other.ActorOf(Props.Empty, "region");
        var otherAddress = ((ExtendedActorSystem)other).Provider.DefaultAddress;
        var remoteRegion = await Sys.ActorSelection(new RootActorPath(otherAddress) / "user" / "region").ResolveOne(TimeSpan.FromSeconds(10));
        var localRegion = CreateTestProbe().Ref;
        var allocations = ImmutableDictionary<IActorRef, IImmutableList<string>>.Empty
            .Add(localRegion, ImmutableList.Create("x", "y")).Add(remoteRegion, ImmutableList<string>.Empty);

        await FleetRuntime.Write(Sys, FleetKeys.Placements, "vm-here", cluster.SelfAddress.ToString(), TimeSpan.FromSeconds(3));
        await FleetRuntime.Write(Sys, FleetKeys.Placements, "vm-there", otherAddress.ToString(), TimeSpan.FromSeconds(3));
        var strategy = new FleetAllocationStrategy(Sys, TimeSpan.FromSeconds(3));

        // The placement decides, not the shard counts (the local region has more shards).
        Assert.Equal(localRegion, await strategy.AllocateShard(remoteRegion, "vm-here", allocations));
        Assert.Equal(remoteRegion, await strategy.AllocateShard(localRegion, "vm-there", allocations));
        // Without a placement: the region with the fewest shards.
        Assert.Equal(remoteRegion, await strategy.AllocateShard(localRegion, "never-placed", allocations));
        // A shard is never moved: that would stop its guest.
        Assert.Empty(await strategy.Rebalance(allocations.SetItem(localRegion, ImmutableList.Create("x", "y", "z", "w")), ImmutableHashSet<string>.Empty));
        await other.Terminate();
    }
}

using System.Collections.Immutable;
using Akka.Actor;
using Akka.Cluster;
using Akka.Cluster.Sharding;
using Akka.DistributedData;
using Akka.Event;

namespace KvmActors.Host.Fleet;

/// <summary>A placement decision: the node chosen, or why none fits (an HTTP status and the reason).</summary>
public sealed record Placement(string? Node, int Status, string Title, string Reason);

/// <summary>
/// Where a new VM goes: the kvm-host node with the most free vCPUs, then the most free memory (then the lowest
/// address, so the choice is deterministic); never a node where the VM would pass host.max-vms, max-vcpus-total
/// or max-memory-total.
/// </summary>
public static class FleetPlacement
{
    public static Placement Choose(IReadOnlyCollection<(string Node, NodeCapacity Free)> nodes, int vcpus, ulong memory)
    {
        nodes = nodes.Where(n => !n.Free.Draining).ToList(); // a draining node takes no VM
        var fits = nodes.Where(n => n.Free.Vms < n.Free.MaxVms && n.Free.FreeVcpus >= vcpus && n.Free.FreeMemory >= memory)
            .OrderByDescending(n => n.Free.FreeVcpus).ThenByDescending(n => n.Free.FreeMemory).ThenBy(n => n.Node, StringComparer.Ordinal)
            .ToList();
        if (fits.Count > 0) return new Placement(fits[0].Node, 201, "", "");
        if (nodes.Count == 0) return new Placement(null, 503, "No kvm-host node", "the cluster has no kvm-host node that is up, not draining and has published its capacity");
        var each = string.Join("; ", nodes.OrderBy(n => n.Node, StringComparer.Ordinal).Select(n =>
            $"{n.Node}: {n.Free.FreeVcpus} of {n.Free.MaxVcpus} vCPU(s) free, {n.Free.FreeMemory} of {n.Free.MaxMemory} bytes free, {n.Free.Vms} of {n.Free.MaxVms} VMs"));
        // Memory is the only shortfall when some node has the vCPUs and a VM slot: 507 like a single host; else 429.
        var memoryOnly = nodes.Any(n => n.Free.Vms < n.Free.MaxVms && n.Free.FreeVcpus >= vcpus);
        return memoryOnly
            ? new Placement(null, 507, "Not enough memory", $"no kvm-host node has {memory} bytes of guest RAM free ({each})")
            : new Placement(null, 429, "Too many vCPUs", $"no kvm-host node has {vcpus} vCPU(s) and a VM slot free ({each})");
    }
}

/// <summary>The fleet's replicated state: each kvm-host node's free capacity, and each VM's node.</summary>
public static class FleetKeys
{
    /// <summary>Node address → <see cref="NodeCapacity"/> JSON.</summary>
    public static readonly LWWDictionaryKey<string, string> Capacity = new("kvmactors-fleet-capacity");
    /// <summary>VM id (= shard id) → the node address it was placed on.</summary>
    public static readonly LWWDictionaryKey<string, string> Placements = new("kvmactors-fleet-placements");
}

/// <summary>
/// Allocates each VM's shard to the node its create chose (<see cref="FleetPlacement"/>, written to
/// <see cref="FleetKeys.Placements"/> with write-majority before the create is sent; read here with read-majority,
/// so the coordinator sees it). The choice is made where the create arrives because only there the guest's size is
/// known: AllocateShard gets the shard id alone. Rebalances only the shards of VMs that moved by live migration:
/// moving any other would stop a running guest.
/// </summary>
public sealed class FleetAllocationStrategy(ActorSystem system, TimeSpan consistencyTimeout) : IShardAllocationStrategy
{
    private readonly ILoggingAdapter _log = Logging.GetLogger(system, typeof(FleetAllocationStrategy));

    public async Task<IActorRef> AllocateShard(IActorRef requester, string shardId, IImmutableDictionary<IActorRef, IImmutableList<string>> currentShardAllocations)
    {
        var placements = await ReadPlacements();
        if (placements.TryGetValue(shardId, out var node))
        {
            foreach (var region in currentShardAllocations.Keys)
                if (AddressOf(region) == node) return region;
            // Its node is gone (the VM comes back elsewhere): the node with the most room for it, as for a new VM.
            if (await FleetRecoveryPlacement.ChooseAsync(system, shardId, currentShardAllocations.Keys, AddressOf, consistencyTimeout) is { } room) return room;
            _log.Warning("VM {0} was placed on {1}, which has no shard region (any more): placing it by shard count", shardId, node);
        }
        else _log.Warning("VM {0} has no placement: placing it by shard count", shardId);
        return currentShardAllocations.OrderBy(kv => kv.Value.Count).ThenBy(kv => AddressOf(kv.Key), StringComparer.Ordinal).First().Key;
    }

    /// <summary>
    /// Hands off only the shards of VMs that have moved by live migration (<see cref="FleetDrainKeys.Moves"/> names their
    /// new node, which has a region): their guest runs there already, so the handoff stops no guest, and the new node's
    /// entity adopts the VM. No other shard ever moves.
    /// </summary>
    public async Task<IImmutableSet<string>> Rebalance(IImmutableDictionary<IActorRef, IImmutableList<string>> currentShardAllocations,
        IImmutableSet<string> rebalanceInProgress)
    {
        var moves = await ReadPlacements(FleetDrainKeys.Moves, ReadLocal.Instance);
        if (moves.Count == 0) return ImmutableHashSet<string>.Empty;
        var nodes = currentShardAllocations.Keys.Select(AddressOf).ToHashSet();
        var handOff = currentShardAllocations
            .SelectMany(kv => kv.Value.Where(shard => !rebalanceInProgress.Contains(shard) && moves.TryGetValue(shard, out var to)
                && to != AddressOf(kv.Key) && nodes.Contains(to)))
            .ToImmutableHashSet();
        if (handOff.Count > 0) _log.Info("handing off the shard(s) of VM(s) moved by live migration: {0}", string.Join(", ", handOff));
        return handOff;
    }

    private Task<IImmutableDictionary<string, string>> ReadPlacements() =>
        ReadPlacements(FleetKeys.Placements, new ReadMajority(consistencyTimeout), ReadLocal.Instance);

    private async Task<IImmutableDictionary<string, string>> ReadPlacements(LWWDictionaryKey<string, string> key, params IReadConsistency[] consistencies)
    {
        var replicator = DistributedData.Get(system).Replicator;
        foreach (var consistency in consistencies)
        {
            try
            {
                var answer = await replicator.Ask<IGetResponse>(Dsl.Get(key, consistency), consistencyTimeout + TimeSpan.FromSeconds(1));
                if (answer is GetSuccess ok) return ok.Get(key).Entries;
                if (answer is NotFound) return ImmutableDictionary<string, string>.Empty;
            }
            catch (AskTimeoutException) { }
        }
        return ImmutableDictionary<string, string>.Empty;
    }

    /// <summary>A region's node address; the coordinator's own region has a local path, so it gets the cluster's self address.</summary>
    private string AddressOf(IActorRef region) =>
        (region.Path.Address.HasGlobalScope ? region.Path.Address : Cluster.Get(system).SelfAddress).ToString();
}

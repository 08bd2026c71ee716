using Akka.Actor;
using Akka.DistributedData;

namespace KvmActors.Host.Fleet;

/// <summary>Where a VM whose node is gone comes back: among the shard regions there are, the node with the most room for it.</summary>
public static class FleetRecoveryPlacement
{
    /// <returns>The region to allocate the VM's shard to, or null when its record or the nodes' capacity is not known here.</returns>
    public static async Task<IActorRef?> ChooseAsync(ActorSystem system, string id, IEnumerable<IActorRef> regions, Func<IActorRef, string> addressOf,
        TimeSpan timeout)
    {
        if (await FleetRecords.ReadLocalAsync(system, id, timeout) is not { } record) return null;
        var byAddress = regions.ToDictionary(addressOf);
        IGetResponse answer;
        try { answer = await DistributedData.Get(system).Replicator.Ask<IGetResponse>(Dsl.Get(FleetKeys.Capacity, ReadLocal.Instance), timeout); }
        catch (AskTimeoutException) { return null; }
        if (answer is not GetSuccess ok) return null;
        var nodes = ok.Get(FleetKeys.Capacity).Entries.Where(c => byAddress.ContainsKey(c.Key) && NodeCapacity.FromJson(c.Value) is not null)
            .Select(c => (c.Key, NodeCapacity.FromJson(c.Value)!)).ToList();
        return FleetPlacement.Choose(nodes, record.Vcpus, record.Memory).Node is { } node ? byAddress[node] : null;
    }
}

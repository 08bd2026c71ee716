using System.Collections.Immutable;
using System.Text.Json.Nodes;
using Akka.Actor;
using Akka.Cluster;
using Akka.DistributedData;
using KvmActors.Host.Serve;
using Serilog;

namespace KvmActors.Host.Fleet;

/// <summary>
/// This node's part of the fleet, for the API: the VM shard region (a proxy on api nodes), the cluster's
/// membership, and the replicated capacity and placements. Set up with the actor system (<see cref="FleetSetup"/>).
/// </summary>
public sealed class FleetRuntime(FleetOptions options)
{
    public FleetOptions Options { get; } = options;
    public ActorSystem System { get; private set; } = null!;
    public IActorRef Region { get; private set; } = ActorRefs.Nobody;
    public FleetSettings Settings { get; private set; } = null!;
    /// <summary>One create at a time on this node: each placement sees the capacity the previous one took.</summary>
    public SemaphoreSlim PlacementGate { get; } = new(1, 1);

    public Cluster Cluster => Cluster.Get(System);
    public string SelfAddress => Cluster.SelfAddress.ToString();
    private IActorRef Replicator => DistributedData.Get(System).Replicator;

    internal void Attach(ActorSystem system, IActorRef region, FleetSettings settings)
    {
        System = system;
        Region = region;
        Settings = settings;
    }

    /// <summary>The members that are up and run VMs.</summary>
    public IEnumerable<Member> KvmHosts => Cluster.State.Members.Where(m => m.Status == MemberStatus.Up && m.HasRole(FleetOptions.KvmHostRole));

    public async Task<IImmutableDictionary<string, string>> ReadAsync(LWWDictionaryKey<string, string> key, bool majority)
    {
        var consistency = majority ? (IReadConsistency)new ReadMajority(Settings.ConsistencyTimeout) : ReadLocal.Instance;
        try
        {
            var answer = await Replicator.Ask<IGetResponse>(Dsl.Get(key, consistency), Settings.ConsistencyTimeout + TimeSpan.FromSeconds(1));
            if (answer is GetSuccess ok) return ok.Get(key).Entries;
            if (answer is NotFound) return ImmutableDictionary<string, string>.Empty;
        }
        catch (AskTimeoutException) { }
        // No majority answered in time: what this node has is the best there is.
        return majority ? await ReadAsync(key, majority: false) : ImmutableDictionary<string, string>.Empty;
    }

    /// <summary>Sets one entry with write-majority (a timeout still wrote it here; gossip spreads it).</summary>
    public Task WriteAsync(LWWDictionaryKey<string, string> key, string entry, string value) =>
        Write(System, key, entry, value, Settings.ConsistencyTimeout);

    public static async Task Write(ActorSystem system, LWWDictionaryKey<string, string> key, string entry, string value, TimeSpan timeout)
    {
        var self = Cluster.Get(system).SelfUniqueAddress;
        var replicator = DistributedData.Get(system).Replicator;
        try
        {
            await replicator.Ask<IUpdateResponse>(Dsl.Update(key, LWWDictionary<string, string>.Empty, new WriteMajority(timeout),
                d => d.SetItem(self, entry, value)), timeout + TimeSpan.FromSeconds(1));
        }
        catch (AskTimeoutException) { }
    }

    /// <summary>The free capacity each up kvm-host node published (nodes that published none yet are left out).</summary>
    public async Task<List<(string Node, NodeCapacity Free)>> CapacityAsync(bool majority)
    {
        var published = await ReadAsync(FleetKeys.Capacity, majority);
        var nodes = new List<(string, NodeCapacity)>();
        foreach (var m in KvmHosts)
            if (published.TryGetValue(m.Address.ToString(), out var json) && NodeCapacity.FromJson(json) is { } c) nodes.Add((m.Address.ToString(), c));
        return nodes;
    }

    /// <summary>Every up kvm-host node's VMs (the local API's summaries, each with its node); nodes that do not answer are logged and left out.</summary>
    public async Task<JsonArray> ListVmsAsync()
    {
        var asks = KvmHosts.Select(async m =>
        {
            try { return await System.ActorSelection(new RootActorPath(m.Address) / "user" / FleetNodeActor.Name).Ask<NodeVms>(new ListNodeVms(), Settings.ListTimeout); }
            catch (Exception e) when (e is AskTimeoutException or ActorNotFoundException)
            {
                Log.Warning("fleet: node {Node} did not list its VMs within {Timeout}", m.Address, Settings.ListTimeout);
                return null;
            }
        }).ToList();
        var all = new JsonArray();
        foreach (var answer in await Task.WhenAll(asks))
        {
            if (answer is null) continue;
            foreach (var vm in JsonNode.Parse(answer.Json)!.AsArray())
            {
                var o = vm!.AsObject().DeepClone().AsObject();
                o["node"] = answer.Node;
                all.Add(o);
            }
        }
        return all;
    }

    /// <summary>A new VM id, not used in the fleet yet.</summary>
    public string NewVmId(IImmutableDictionary<string, string> placements)
    {
        while (true)
        {
            var id = Convert.ToHexString(global::System.Security.Cryptography.RandomNumberGenerator.GetBytes(4)).ToLowerInvariant();
            if (!placements.ContainsKey(id)) return id;
        }
    }

    public static NodeCapacity CapacityOf(VmHost host)
    {
        var (vms, vcpus, memory) = host.Live;
        var s = host.Settings;
        return new NodeCapacity(vms, s.MaxVms, Math.Max(0, s.MaxVcpusTotal - vcpus), s.MaxVcpusTotal,
            s.MaxMemoryTotal > memory ? s.MaxMemoryTotal - memory : 0, s.MaxMemoryTotal, host.Draining);
    }
}

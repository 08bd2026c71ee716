using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json.Nodes;
using Akka.Actor;
using Akka.Cluster;
using Akka.Cluster.Sharding;
using Akka.DistributedData;
using KvmActors.Host.Serve;
using Serilog;

namespace KvmActors.Host.Fleet;

/// <summary>The drain's bounds and the follow's long poll, from <c>kvmactors.fleet</c> (bound with the rest by <see cref="FleetSettings.From"/>).</summary>
public sealed record FleetDrainSettings(TimeSpan Timeout, TimeSpan HandoffTimeout, TimeSpan OnExitTimeout, TimeSpan FollowPoll);

/// <summary>Drain this node: every live VM moves by live migration to another kvm-host node; the node takes no new VMs.</summary>
/// <param name="Timeout">No migration starts after this (default drain.timeout).</param>
public sealed record DrainNode(TimeSpan? Timeout = null);

/// <summary>Take VMs again: the node is no longer draining (its placement and migrations in count it again).</summary>
public sealed record UndrainNode;

/// <summary>Move one VM of this node by live migration, to <see cref="To"/> (a node's address or HOST:PORT) or where the placement chooses.</summary>
public sealed record MoveFleetVm(string VmId, string? To);

/// <summary>
/// A call answered from this node's host rather than through the region: the kinds the entity leaves to
/// <see cref="FleetDrainActor"/>, and calls for a VM that moved away before its shard followed (forwarded once to
/// its new node). <see cref="Attempt"/> counts the retries while a migration is finishing.
/// </summary>
public sealed record LocalVmCall(FleetVmCall Call, bool Forwarded = false, int Attempt = 0);

public sealed record GetMigrationEndpoint;

/// <summary>A VM migrated here keeps the creation time it had on its source node.</summary>
public sealed record KeepCreatedAt(string VmId, DateTimeOffset CreatedAt);

public sealed record CreatedAtKept;

/// <summary>Where this node's API takes an incoming migration (<c>unix:PATH</c> or <c>http://HOST:PORT</c>).</summary>
public sealed record MigrationEndpoint(string? Address);

public sealed record OwnsShard(string VmId);

public sealed record ShardOwned(bool Owned);

public sealed record GetNodeMetrics;

/// <summary>A node's metrics: the text its GET /metrics gives.</summary>
public sealed record NodeMetrics(string Node, string Text);

/// <summary>The drain's replicated state.</summary>
public static class FleetDrainKeys
{
    /// <summary>VM id → the node it moved to, while its shard follows it: the only shards the allocation strategy hands off.</summary>
    public static readonly LWWDictionaryKey<string, string> Moves = new("kvmactors-fleet-moves");
}

/// <summary>
/// One VM's outcome in a drain or a move: migrated (<see cref="Migration"/>: the migration's figures, as
/// POST /vms/{id}/migrate on a single host gives them) or why it stays where it runs (<see cref="Status"/>, <see cref="Reason"/>).
/// </summary>
public sealed record VmMove(string Id, string Name, int Status, string? To = null, JsonObject? Migration = null, string? Reason = null)
{
    public double? HandoffMs { get; init; }
    public bool Migrated => Status == 200;

    public JsonObject ToJson()
    {
        if (!Migrated) return new JsonObject { ["id"] = Id, ["name"] = Name, ["state"] = "not-moved", ["status"] = Status, ["reason"] = Reason };
        var o = Migration!.DeepClone().AsObject();
        o["name"] = Name;
        o["to"] = To; // the node (the migration itself went to its API's address)
        o["handoffMs"] = HandoffMs; // null: the shard had not followed within drain.handoff-timeout (the old node forwards)
        return o;
    }
}

/// <summary>
/// Each kvm-host node's drain actor (/user/fleet-drain). It drains its own node (<see cref="DrainNode"/>) and moves
/// single VMs (<see cref="MoveFleetVm"/>): each VM goes by live migration (<see cref="VmHost.MigrateAsync"/>, keeping
/// its id and console) to the node <see cref="FleetPlacement"/> chooses among the others; then the placement in
/// Distributed Data names the new node, the move is recorded in <see cref="FleetDrainKeys.Moves"/>, and the
/// allocation strategy's rebalance hands that one shard off, so the new node's entity adopts the VM. Until the shard
/// has followed, calls that reach the old entity come here and are forwarded to the new node's drain actor, which
/// answers them from its host. Migrations run one at a time per node (two cores; the downtime stays short).
/// </summary>
public sealed class FleetDrainActor : ReceiveActor
{
    public const string Name = "fleet-drain";

    private readonly FleetRuntime _fleet;
    private readonly Func<VmHost> _resolveHost;
    private readonly string? _endpoint;
    private readonly FleetDrain _drain;
    private readonly FleetVmCalls _calls;

    public static Props Props(FleetRuntime fleet, Func<VmHost> host, FleetDrainSettings settings, string? endpoint) =>
        Akka.Actor.Props.Create(() => new FleetDrainActor(fleet, host, settings, endpoint));

    public FleetDrainActor(FleetRuntime fleet, Func<VmHost> host, FleetDrainSettings settings, string? endpoint)
    {
        _fleet = fleet;
        _resolveHost = host;
        _endpoint = endpoint;
        _drain = new FleetDrain(fleet, host, settings);
        _calls = new FleetVmCalls(host, _drain, endpoint, settings);
        Receive<DrainNode>(d => _drain.DrainAsync(d.Timeout ?? settings.Timeout).PipeTo(Sender));
        Receive<MoveFleetVm>(m => _drain.MoveOneAsync(m.VmId, m.To).PipeTo(Sender));
        Receive<UndrainNode>(_ => _drain.UndrainAsync().PipeTo(Sender));
        Receive<LocalVmCall>(Local);
        Receive<GetMigrationEndpoint>(_ => Sender.Tell(new MigrationEndpoint(_endpoint)));
        Receive<KeepCreatedAt>(k =>
        {
            if (_resolveHost().Find(k.VmId) is { MigratedTo: null } vm) vm.CreatedAt = k.CreatedAt;
            Sender.Tell(new CreatedAtKept());
        });
        Receive<OwnsShard>(o => Owns(o.VmId).PipeTo(Sender));
        Receive<GetNodeMetrics>(_ => Metrics().PipeTo(Sender));
    }

    private void Local(LocalVmCall local)
    {
        var call = local.Call;
        var host = _resolveHost();
        if (host.Find(call.VmId) is { MigratedTo: null } vm)
        {
            _calls.Answer(vm, call).PipeTo(Sender);
            return;
        }
        if (!local.Forwarded && _drain.Moved.TryGetValue(call.VmId, out var node))
        {
            Context.ActorSelection(new RootActorPath(Address.Parse(node)) / "user" / Name).Tell(local with { Forwarded = true }, Sender);
            return;
        }
        // Migrated, and the move is being recorded (the sender saw the target's answer a moment ago): ask again shortly.
        if (host.Find(call.VmId) is { MigratedTo: not null } && local.Attempt < 100)
        {
            Context.System.Scheduler.ScheduleTellOnce(TimeSpan.FromMilliseconds(50), Self, local with { Attempt = local.Attempt + 1 }, Sender);
            return;
        }
        Sender.Tell(FleetAnswer.Problem(404, "No such VM", $"no VM with id '{call.VmId}'"));
    }

    private async Task<ShardOwned> Owns(string id)
    {
        var state = await _fleet.Region.Ask<CurrentShardRegionState>(GetShardRegionState.Instance, _fleet.Settings.AskTimeout);
        return new ShardOwned(state.Shards.Any(s => s.ShardId == id));
    }

    private async Task<NodeMetrics> Metrics()
    {
        using var text = new MemoryStream();
        await _resolveHost().Metrics.Registry.CollectAndExportAsTextAsync(text);
        return new NodeMetrics(_fleet.SelfAddress, System.Text.Encoding.UTF8.GetString(text.ToArray()));
    }
}

/// <summary>The drain and move logic of one node (run by its <see cref="FleetDrainActor"/>, outside the actor's thread).</summary>
public sealed class FleetDrain(FleetRuntime fleet, Func<VmHost> resolveHost, FleetDrainSettings settings)
{
    private readonly SemaphoreSlim _gate = new(1, 1);

    /// <summary>VMs this node moved away whose shard has not followed yet: VM id → the node it runs on now.</summary>
    public ConcurrentDictionary<string, string> Moved { get; } = new();

    private VmHost Host => resolveHost();

    public async Task<FleetAnswer> DrainAsync(TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        var host = Host;
        var first = !host.Draining;
        host.Draining = true;
        // Published before the first move, so no node places a new VM here meanwhile.
        await Publish();
        if (first) Log.Information("fleet: draining this node ({Node})", fleet.SelfAddress);
        await _gate.WaitAsync();
        try
        {
            var deadline = clock.Elapsed + timeout;
            var live = host.All.Where(v => v.State != VmStates.Ended && v.MigratedTo is null).ToList();
            var free = await FreeElsewhereAsync();
            var moves = new List<VmMove>();
            foreach (var vm in live)
            {
                if (clock.Elapsed > deadline)
                {
                    moves.Add(new VmMove(vm.Id, vm.Name, 504, Reason: $"the drain's time ({timeout}) ran out: it runs on here"));
                    continue;
                }
                moves.Add(await MoveAsync(host, vm, free));
            }
            moves = [.. await FollowAsync(moves)];
            await Publish(); // the capacity without the moved VMs, on a majority before the answer
            var migrated = moves.Count(m => m.Migrated);
            Log.Information("fleet: drain of {Node}: {Migrated} of {Count} VM(s) moved in {Ms:F0} ms{Rest}", fleet.SelfAddress, migrated, moves.Count,
                clock.Elapsed.TotalMilliseconds, migrated == moves.Count ? "" : $"; {moves.Count - migrated} stay here (see the answer's reasons)");
            var body = new JsonObject
            {
                ["node"] = fleet.SelfAddress, ["draining"] = true, ["migrated"] = migrated, ["notMoved"] = moves.Count - migrated,
                ["drainMs"] = Math.Round(clock.Elapsed.TotalMilliseconds, 1),
                ["vms"] = new JsonArray(moves.Select(m => (JsonNode)m.ToJson()).ToArray()),
            };
            if (migrated < moves.Count)
            {
                body["title"] = "Drain incomplete";
                body["detail"] = $"{moves.Count - migrated} VM(s) could not move and run on here: "
                    + string.Join("; ", moves.Where(m => !m.Migrated).Select(m => $"{m.Id}: {m.Reason}"));
            }
            return FleetAnswer.Json(migrated == moves.Count ? 200 : 409, body);
        }
        finally { _gate.Release(); }
    }

    /// <summary>Ends the node's draining (409 when it is not draining, or while its drain still moves VMs).</summary>
    public async Task<FleetAnswer> UndrainAsync()
    {
        var host = Host;
        if (!host.Draining) return FleetAnswer.Problem(409, "Not draining", $"{fleet.SelfAddress} is not draining: it takes VMs already");
        if (!await _gate.WaitAsync(0))
            return FleetAnswer.Problem(409, "Drain in progress", $"{fleet.SelfAddress} is moving its VMs away now: undrain it once its drain has answered");
        try
        {
            host.Draining = false;
            // Published before the answer, so the next placement through any node may choose this node again.
            await Publish();
            Log.Information("fleet: {Node} undrained: it takes VMs again", fleet.SelfAddress);
            return FleetAnswer.Json(200, new JsonObject { ["node"] = fleet.SelfAddress, ["draining"] = false });
        }
        finally { _gate.Release(); }
    }

    public async Task<FleetAnswer> MoveOneAsync(string id, string? to)
    {
        await _gate.WaitAsync();
        try
        {
            var host = Host;
            if (host.Find(id) is not { MigratedTo: null } vm) return FleetAnswer.Problem(404, "No such VM", $"no VM with id '{id}'");
            if (vm.State == VmStates.Ended) return FleetAnswer.Problem(409, "Cannot migrate", $"VM {id} has ended");
            var free = await FreeElsewhereAsync();
            if (to is not null)
            {
                if (FleetNodes.Resolve(fleet, to) is not { } member)
                    return FleetAnswer.Problem(400, "No such node", $"'{to}' is not a member of the cluster (give its address or HOST:PORT)");
                var node = member.Address.ToString();
                if (node == fleet.SelfAddress) return FleetAnswer.Problem(409, "Cannot migrate", $"VM {id} runs on {node} already");
                free = free.Where(n => n.Node == node).ToList();
                if (free.Count == 0) return FleetAnswer.Problem(409, "Cannot migrate", $"{node} is not an up kvm-host node that published its capacity");
            }
            var move = (await FollowAsync([await MoveAsync(host, vm, free)])).Single();
            if (!move.Migrated)
                return FleetAnswer.Problem(move.Status, "Migration failed", move.Reason ?? "", new Dictionary<string, object?> { ["reason"] = move.Reason });
            return FleetAnswer.Json(200, move.ToJson());
        }
        finally { _gate.Release(); }
    }

    /// <summary>The other kvm-host nodes' free capacity (read-majority); the drain counts each move against it.</summary>
    private async Task<List<(string Node, NodeCapacity Free)>> FreeElsewhereAsync() =>
        (await fleet.CapacityAsync(majority: true)).Where(n => n.Node != fleet.SelfAddress).ToList();

    /// <summary>One live migration to the node the placement chooses in <paramref name="free"/> (which it then updates).</summary>
    private async Task<VmMove> MoveAsync(VmHost host, HostedVm vm, List<(string Node, NodeCapacity Free)> free)
    {
        var placement = FleetPlacement.Choose(free, vm.Vcpus, vm.MemoryBytes);
        if (placement.Node is not { } node) return new VmMove(vm.Id, vm.Name, placement.Status, Reason: placement.Reason);
        var target = fleet.System.ActorSelection(new RootActorPath(Address.Parse(node)) / "user" / FleetDrainActor.Name);
        string? endpoint;
        try
        {
            endpoint = (await target.Ask<MigrationEndpoint>(new GetMigrationEndpoint(), fleet.Settings.AskTimeout)).Address;
        }
        catch (Exception e) when (e is AskTimeoutException or ActorNotFoundException) { endpoint = null; }
        if (endpoint is null) return new VmMove(vm.Id, vm.Name, 503, Reason: $"the chosen node {node} did not tell where it takes migrations");
        var outcome = await host.MigrateAsync(vm, endpoint, CancellationToken.None, keepId: vm.Id);
        if (outcome.Status != 200)
            return new VmMove(vm.Id, vm.Name, outcome.Status, Reason: $"migration to {node} failed: {(string?)outcome.Body["detail"]}");
        // Before the move is recorded (and answered), so no one sees the VM with its arrival as its creation.
        try { await target.Ask<CreatedAtKept>(new KeepCreatedAt(vm.Id, vm.CreatedAt), fleet.Settings.AskTimeout); }
        catch (Exception e) when (e is AskTimeoutException or ActorNotFoundException) { Log.Warning("fleet: VM {VmId}: {Node} did not confirm its creation time", vm.Id, node); }
        Moved[vm.Id] = node;
        await fleet.WriteAsync(FleetKeys.Placements, vm.Id, node);
        await fleet.WriteAsync(FleetDrainKeys.Moves, vm.Id, node);
        var i = free.FindIndex(n => n.Node == node);
        var c = free[i].Free;
        free[i] = (node, c with { Vms = c.Vms + 1, FreeVcpus = c.FreeVcpus - vm.Vcpus, FreeMemory = c.FreeMemory - Math.Min(c.FreeMemory, vm.MemoryBytes) });
        // The copy here has ended as Migrated: forgotten, so the fleet lists the VM once, on its new node.
        await vm.Finished.Task.WaitAsync(host.Settings.RequestTimeout).ContinueWith(_ => host.Remove(vm), TaskScheduler.Default);
        return new VmMove(vm.Id, vm.Name, 200, node, outcome.Body);
    }

    /// <summary>
    /// Waits (bounded by drain.handoff-timeout) until each migrated VM's shard is owned by its new node: a call through
    /// the region each round makes the coordinator allocate the handed-off shard there.
    /// </summary>
    private async Task<VmMove[]> FollowAsync(IEnumerable<VmMove> moves) => await Task.WhenAll(moves.Select(async m =>
    {
        if (!m.Migrated) return m;
        var clock = Stopwatch.StartNew();
        var target = fleet.System.ActorSelection(new RootActorPath(Address.Parse(m.To!)) / "user" / FleetDrainActor.Name);
        while (clock.Elapsed < settings.HandoffTimeout)
        {
            try
            {
                // Short: a message the region buffered while the shard was handed off may be dropped (it says so), and is sent again.
                await fleet.Region.Ask<FleetAnswer>(new FleetVmCall(m.Id, FleetVmCallKind.Show), TimeSpan.FromSeconds(1));
                if ((await target.Ask<ShardOwned>(new OwnsShard(m.Id), TimeSpan.FromSeconds(2))).Owned)
                {
                    Moved.TryRemove(m.Id, out _);
                    await RemoveMove(m.Id);
                    return m with { HandoffMs = Math.Round(clock.Elapsed.TotalMilliseconds, 1) };
                }
            }
            catch (Exception e) when (e is AskTimeoutException or ActorNotFoundException) { }
            await Task.Delay(200);
        }
        Log.Warning("fleet: VM {VmId}'s shard did not follow it to {Node} within {Timeout}: this node forwards its calls", m.Id, m.To, settings.HandoffTimeout);
        return m;
    }));

    private async Task RemoveMove(string id)
    {
        var self = fleet.Cluster.SelfUniqueAddress;
        var timeout = fleet.Settings.ConsistencyTimeout;
        try
        {
            await DistributedData.Get(fleet.System).Replicator.Ask<IUpdateResponse>(Dsl.Update(FleetDrainKeys.Moves, LWWDictionary<string, string>.Empty,
                new WriteMajority(timeout), d => d.Remove(self, id)), timeout + TimeSpan.FromSeconds(1));
        }
        catch (AskTimeoutException) { }
    }

    private async Task Publish()
    {
        try { await fleet.System.ActorSelection($"/user/{FleetNodeActor.Name}").Ask<CapacityPublished>(new PublishCapacity(), fleet.Settings.AskTimeout); }
        catch (AskTimeoutException) { }
    }
}

/// <summary>The members of the cluster by the names the API takes: the full address or HOST:PORT.</summary>
public static class FleetNodes
{
    public static Member? Resolve(FleetRuntime fleet, string name)
    {
        var text = Uri.UnescapeDataString(name);
        return fleet.Cluster.State.Members.FirstOrDefault(m =>
            m.Address.ToString() == text || $"{m.Address.Host}:{m.Address.Port}" == text);
    }
}

/// <summary>
/// serve --drain-on-exit: on SIGTERM (stopped before the VM host and the actor system) the node drains, bounded by
/// kvmactors.fleet.drain.on-exit-timeout; what did not move by then stops with the node.
/// </summary>
public sealed class FleetDrainOnExit(FleetRuntime fleet) : Microsoft.Extensions.Hosting.IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        var settings = fleet.Settings.Drain;
        var clock = Stopwatch.StartNew();
        Log.Information("fleet: --drain-on-exit: draining {Node} before it leaves (at most {Timeout})", fleet.SelfAddress, settings.OnExitTimeout);
        try
        {
            var answer = await fleet.System.ActorSelection($"/user/{FleetDrainActor.Name}")
                .Ask<FleetAnswer>(new DrainNode(settings.OnExitTimeout), settings.OnExitTimeout + settings.HandoffTimeout + fleet.Settings.AskTimeout, cancellationToken);
            Log.Information("fleet: --drain-on-exit: {Status} after {Ms:F0} ms: {Answer}", answer.Status, clock.Elapsed.TotalMilliseconds,
                System.Text.Encoding.UTF8.GetString(answer.Body));
        }
        catch (Exception e) when (e is AskTimeoutException or ActorNotFoundException or OperationCanceledException)
        {
            Log.Warning("fleet: --drain-on-exit: the drain did not finish ({Error}); the VMs left here stop with the node", e.Message);
        }
    }
}

using System.Text.Json.Nodes;
using Akka.Actor;
using Akka.Cluster;
using Akka.Cluster.Sharding;
using KvmActors.Host.Serve;
using KvmActors.Runtime.Vm;

namespace KvmActors.Host.Fleet;

/// <summary>
/// One VM of the fleet, a sharded entity (entity id = shard id = VM id) on the node the allocation strategy chose.
/// Its first message creates the VM through this node's <see cref="VmHost"/> under the fleet's id; then it answers
/// the API's calls for that VM from the local host, with the JSON the local API gives. Entities are remembered
/// (remember-entities): when a node dies, its shards start again on the others and each entity, finding its VM's
/// record (<see cref="VmRecord"/>) without an end, brings the VM back there (<see cref="VmEntityRecovery"/>).
/// </summary>
public sealed partial class VmEntity : ReceiveActor, IWithUnboundedStash
{
    private readonly VmHost _host;
    private readonly string _id;

    public IStash Stash { get; set; } = null!;

    public static Props Props(Func<VmHost> host, string id) => Akka.Actor.Props.Create(() => new VmEntity(host(), id));

    public VmEntity(VmHost host, string id)
    {
        _host = host;
        _id = id;
        _recovery = RecoverySettings.From(Context.System.Settings.Config, host.SnapshotDir);
        Checking();
    }

    /// <summary>No VM of this id here yet: a create comes, or the record said there is nothing to bring back.</summary>
    private void Idle()
    {
        Receive<CreateFleetVm>(Create);
        // A call before any create: the VM is not here (its create was refused, or this node is not its owner any more).
        Receive<FleetVmCall>(call =>
        {
            // The VM migrated here (a drain or a move) and its shard followed it: this entity adopts it.
            if (_host.Find(_id) is { MigratedTo: null })
            {
                // Read its record again first, so this node takes it over as owner (VmEntityRecovery.Decide).
                Stash.Stash();
                Become(Checking);
                ReadRecord(0);
                return;
            }
            Sender.Tell(NotHere());
            Context.Parent.Tell(new Passivate(PoisonPill.Instance));
        });
    }

    private void Create(CreateFleetVm create)
    {
        HostedVm vm;
        TimeSpan? interval;
        try
        {
            interval = FleetRecords.CheckpointInterval(create.Config, create.Sets);
            vm = _host.Create(new GuestRequest(create.Config, create.Name, create.Sets), _id);
        }
        catch (ProblemException p)
        {
            Sender.Tell(FleetAnswer.Problem(p));
            Context.Parent.Tell(new Passivate(PoisonPill.Instance));
            return;
        }
        var record = new VmRecord(_id, create.Config, create.Name, create.Sets, interval, FleetRecords.SelfOwner(Context.System), vm.Vcpus, vm.MemoryBytes);
        BecomeRunning(vm, record);
        var answer = FleetAnswer.Json(201, new JsonObject
        {
            ["id"] = vm.Id, ["name"] = vm.Name, ["state"] = vm.State, ["node"] = Cluster.Get(Context.System).SelfAddress.ToString(),
        });
        // Answered once a majority has the VM's record (so it comes back if this node dies right after) and this
        // node's new free capacity (so the next placement counts this VM).
        var written = FleetRecords.WriteAsync(Context.System, record, _recovery.ConsistencyTimeout);
        var published = Context.ActorSelection($"/user/{FleetNodeActor.Name}").Ask<CapacityPublished>(new PublishCapacity(), TimeSpan.FromSeconds(10));
        Task.WhenAll(written, published).ContinueWith(_ => answer, TaskScheduler.Default).PipeTo(Sender);
    }

    private void Running()
    {
        RunningRecovery();
        Receive<CreateFleetVm>(_ => Sender.Tell(FleetAnswer.Problem(409, "VM exists", $"a VM with id '{_id}' exists already")));
        ReceiveAsync<FleetVmCall>(async call =>
        {
            var sender = Sender;
            // The fleet's other calls, and every call once the VM has moved to another node (until its shard follows
            // it there), are answered by this node's drain actor (FleetDrain.cs).
            var vm = _host.Find(_id);
            if (call.Kind > FleetVmCallKind.Console || vm is { MigratedTo: not null })
                Context.ActorSelection($"/user/{FleetDrainActor.Name}").Tell(new LocalVmCall(call), sender);
            else if (vm is not null) sender.Tell(await Answer(_host, vm, call));
            // Not in the host any more: deleted (a running entity always had its VM here), so it is gone.
            else sender.Tell(_vm is null && _record is { End: not null } r ? FleetAnswer.Json(200, r.EndedView()) : NotHere());
        });
    }

    internal static async Task<FleetAnswer> Answer(VmHost host, HostedVm vm, FleetVmCall call)
    {
        switch (call.Kind)
        {
            case FleetVmCallKind.Show:
                return FleetAnswer.Json(200, ServeApi.Details(vm, await ServeApi.LiveStatus(vm)));
            case FleetVmCallKind.Pause:
                return Controlled(await host.PauseAsync(vm, CancellationToken.None), vm, "pause");
            case FleetVmCallKind.Resume:
                return Controlled(await host.ResumeAsync(vm, CancellationToken.None), vm, "resume");
            case FleetVmCallKind.Stop:
                return await host.StopAsync(vm, "stopped through the API", host.Settings.RequestTimeout)
                    ? FleetAnswer.Json(200, ServeApi.Details(vm))
                    : FleetAnswer.Problem(504, "Stop timed out", $"VM {vm.Id} did not end within {host.Settings.RequestTimeout}");
            default:
                var (first, start, bytes) = vm.Console.Read(call.Offset);
                return new FleetAnswer(200, "application/octet-stream", bytes, new()
                {
                    [ServeApi.ConsoleFirstOffsetHeader] = first.ToString(), [ServeApi.ConsoleStartHeader] = start.ToString(),
                    [ServeApi.ConsoleNextOffsetHeader] = (start + bytes.Length).ToString(),
                });
        }
    }

    private static FleetAnswer Controlled(VmHost.ControlOutcome outcome, HostedVm vm, string what) => outcome switch
    {
        VmHost.ControlOutcome.Done => FleetAnswer.Json(200, ServeApi.Details(vm)),
        VmHost.ControlOutcome.Conflict => FleetAnswer.Problem(409, $"Cannot {what}", $"VM {vm.Id} is {vm.State}: {what} is not possible"),
        _ => FleetAnswer.Problem(504, $"{what} timed out", $"VM {vm.Id} did not answer the {what} in time"),
    };

    private FleetAnswer NotHere() => FleetAnswer.Problem(404, "No such VM", $"no VM with id '{_id}'");
}

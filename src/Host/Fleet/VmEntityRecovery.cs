using Akka.Actor;
using Akka.Cluster;
using Akka.Cluster.Sharding;
using Akka.Event;
using KvmActors.Host.Serve;
using KvmActors.Sdk;

namespace KvmActors.Host.Fleet;

/// <summary>
/// The VM entity's recovery: on start it reads its VM's record. A remembered entity restarted on another node after
/// its node died finds a record without an end, owned by a node that is no longer up: it writes itself as the owner
/// (majority) and brings the VM back here, restored from its last checkpoint when it has one
/// (<see cref="VmRecovery.RestartedFromCheckpoint"/>), else booted again from its config (<see cref="VmRecovery.Rebooted"/>).
/// A VM that ended (by itself, or stopped by a user) has an end in its record and is never brought back.
/// </summary>
public sealed partial class VmEntity : IWithTimers
{
    public ITimerScheduler Timers { get; set; } = null!;

    private sealed record RecordRead(VmRecord? Record, int Attempt);
    private sealed record ReadAgain(int Attempt);
    private sealed record TakenOver(VmRecord Record);
    private sealed record VmFinished;
    /// <summary>The VM was deleted (DELETE /vms/ID on its node): the fleet forgets it.</summary>
    private sealed record VmDeleted;
    private sealed record VmForgotten;
    private Action<HostedVm>? _onRemoved;

    /// <summary>How often an entity whose record names a live owner looks again (that owner's downing may not have reached this node yet).</summary>
    private const int OwnerChecks = 10;

    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly RecoverySettings _recovery;
    private VmRecord? _record;
    private HostedVm? _vm;
    /// <summary>Set once this node learned the VM is owned elsewhere: its copy here is stopped, and its end is not the VM's.</summary>
    private bool _fenced;

    protected override void PreStart() => ReadRecord(0);

    private void Checking()
    {
        Receive<RecordRead>(Decide);
        Receive<ReadAgain>(r => ReadRecord(r.Attempt));
        ReceiveAny(_ => Stash.Stash());
    }

    private void ReadRecord(int attempt)
    {
        var (system, id, timeout) = (Context.System, _id, _recovery.ConsistencyTimeout);
        Task.Run(async () =>
        {
            var (ok, record) = await FleetRecords.ReadMajorityAsync(system, id, timeout);
            record = ok ? record : await FleetRecords.ReadLocalAsync(system, id, timeout);
            // None in Distributed Data: with a journal, the whole cluster may have been down (its records are in the journal only).
            if (record is null && FleetJournal.Enabled(system)) record = await FleetJournal.LoadAsync(system, id, timeout);
            return new RecordRead(record, attempt);
        }).PipeTo(Self);
    }

    private void Decide(RecordRead read)
    {
        var record = read.Record;
        if (_host.Find(_id) is { } local)
        {
            // A VM that migrated here (a drain or a move) is this node's now: its record must name this node, or a
            // later death of this node would not bring it back (the record would name the node it left).
            var self = FleetRecords.SelfOwner(Context.System);
            var mine = local.MigratedTo is null && record is not null && record.Owner != self ? record with { Owner = self } : record;
            BecomeRunning(local, mine);
            if (!ReferenceEquals(mine, record)) WriteRecord(mine!);
        }
        else if (record is null) Become(Idle);
        else if (record.End is not null)
        {
            _record = record;
            Become(EndedElsewhere);
        }
        else if (OwnerIsUp(record))
        {
            if (read.Attempt + 1 < OwnerChecks)
            {
                Timers.StartSingleTimer("read-again", new ReadAgain(read.Attempt + 1), TimeSpan.FromSeconds(1));
                return;
            }
            _log.Warning("VM {0}: its record names {1}, which is up: not brought back here", _id, record.Owner);
            Become(Idle);
        }
        else
        {
            Recover(record);
            return;
        }
        Stash.UnstashAll();
    }

    /// <summary>Whether the record's owner is another node that is up (same incarnation): then the VM is not this node's to bring back.</summary>
    private bool OwnerIsUp(VmRecord record)
    {
        if (record.Owner == FleetRecords.SelfOwner(Context.System)) return false;
        return Cluster.Get(Context.System).State.Members.Any(m => $"{m.UniqueAddress.Address}#{m.UniqueAddress.Uid}" == record.Owner
            && m.Status is MemberStatus.Up or MemberStatus.WeaklyUp or MemberStatus.Joining);
    }

    /// <summary>Takes the VM over: a majority learns this node owns it (so its old owner, if it thaws, stops its copy) before it runs here.</summary>
    private void Recover(VmRecord record)
    {
        var system = Context.System;
        var taking = record with { Owner = FleetRecords.SelfOwner(system) };
        _log.Info("VM {0}: its node {1} is gone: taking it over", _id, record.OwnerAddress);
        Become(() =>
        {
            Receive<TakenOver>(t =>
            {
                StartRecovered(t.Record, record.OwnerAddress);
                Stash.UnstashAll();
            });
            ReceiveAny(_ => Stash.Stash());
        });
        var timeout = _recovery.ConsistencyTimeout;
        Task.WhenAll(FleetRecords.WriteAsync(system, taking, timeout),
                FleetRuntime.Write(system, FleetKeys.Placements, _id, Cluster.Get(system).SelfAddress.ToString(), timeout))
            .ContinueWith(_ => new TakenOver(taking), TaskScheduler.Default).PipeTo(Self);
    }

    private void StartRecovered(VmRecord record, string from)
    {
        var now = DateTimeOffset.UtcNow;
        HostedVm vm;
        VmRecovery how;
        try
        {
            if (record.Checkpoint is { } c && Directory.Exists(c.Path))
            {
                try
                {
                    vm = _host.RestoreFrom(c.Path, c.Path, record.Name, _id, c.ConsoleOffset);
                    how = new VmRecovery(VmRecovery.RestartedFromCheckpoint, now, from, c, null);
                }
                catch (ProblemException p) when (p.Status == 422)
                {
                    _log.Warning("VM {0}: its checkpoint {1} cannot be restored ({2}): booting it again", _id, c.Path, p.Message);
                    vm = Reboot(record);
                    how = new VmRecovery(VmRecovery.Rebooted, now, from, null, $"its checkpoint could not be restored: {p.Message}");
                }
            }
            else
            {
                vm = Reboot(record);
                how = new VmRecovery(VmRecovery.Rebooted, now, from, null,
                    record.Checkpoint is { } gone ? $"its checkpoint {gone.Path} is not there" : null);
            }
        }
        catch (ProblemException p)
        {
            // No room here now (or the host is stopping): the entity stops, and remember-entities starts it again
            // after akka.cluster.sharding.entity-restart-backoff, so the VM waits for room rather than being lost.
            _log.Warning("VM {0} cannot come back here now ({1}): {2}", _id, p.Status, p.Message);
            Context.Stop(Self);
            return;
        }
        var recovered = record with { Recovery = how, Checkpoint = how.Checkpoint, End = null };
        _log.Info("VM {0}: {1} here after its node {2} was lost{3}", _id, how.Kind, from,
            how.Checkpoint is { } cp ? $" (checkpoint of {cp.At:O}, console offset {cp.ConsoleOffset})" : "");
        BecomeRunning(vm, recovered);
        WriteRecord(recovered);
    }

    private HostedVm Reboot(VmRecord record) => _host.Create(new GuestRequest(record.Config, record.Name, record.Sets), _id);

    private void BecomeRunning(HostedVm vm, VmRecord? record)
    {
        _vm = vm;
        _record = record;
        if (record is not null) vm.Fleet = record.FleetView();
        Become(Running);
        if (record?.CheckpointInterval is { } interval && vm.State != VmStates.Ended)
            Context.ActorOf(FleetCheckpointer.Props(_host, vm, interval, _recovery), "checkpointer");
        vm.Finished.Task.ContinueWith(_ => new VmFinished(), TaskScheduler.Default).PipeTo(Self);
        if (_onRemoved is null)
        {
            var (self, id) = (Self, _id);
            // A migrated copy forgotten by the drain is not a delete: the VM runs on at its target.
            _onRemoved = removed =>
            {
                if (removed.Id == id && removed.MigratedTo is null && removed.Ended?.Reason != VmEndReason.Migrated) self.Tell(new VmDeleted());
            };
            _host.Removed += _onRemoved;
        }
    }

    protected override void PostStop()
    {
        if (_onRemoved is not null) _host.Removed -= _onRemoved;
    }

    /// <summary>The running entity's recovery messages: checkpoints, a lost ownership, the VM's end.</summary>
    private void RunningRecovery()
    {
        Receive<VmCheckpointed>(c =>
        {
            _record = c.Record;
            if (_vm is not null) _vm.Fleet = c.Record.FleetView();
        });
        Receive<VmDeleted>(_ =>
        {
            if (_host.Find(_id) is not null) return; // a copy of the same id came back meanwhile (a migration back here)
            StopCheckpointer();
            _log.Info("VM {0} was deleted: its record and placement are forgotten", _id);
            // Then passivated: remember-entities records the entity stopped, so the VM is not brought back anywhere.
            FleetRecords.RemoveAsync(Context.System, _id, _recovery.ConsistencyTimeout).ContinueWith(_ => new VmForgotten(), TaskScheduler.Default).PipeTo(Self);
        });
        Receive<VmForgotten>(_ => Context.Parent.Tell(new Passivate(PoisonPill.Instance)));
        Receive<VmOwnershipLost>(lost =>
        {
            _fenced = true;
            StopCheckpointer();
            _log.Warning("VM {0} is owned by {1} now: its copy here stops", _id, lost.Owner ?? "nobody");
            if (_vm is { } vm) _ = _host.StopAsync(vm, "owned by another node now", _host.Settings.RequestTimeout);
        });
        Receive<VmFinished>(_ =>
        {
            StopCheckpointer();
            if (_vm?.Ended is not { } ended || _record is null || _record.End is not null) return;
            // Ends that are not the guest's or a user's: the host stopping (its VMs come back elsewhere), this node
            // downed or fenced (they run elsewhere already), a migration (the VM runs on at its target).
            if (_fenced || _host.ShuttingDown || ended.Reason == VmEndReason.Migrated
                || CoordinatedShutdown.Get(Context.System).ShutdownReason is not null || Cluster.Get(Context.System).IsTerminated) return;
            _record = _record with { End = new VmRecordEnd(ended.Reason.ToString(), ended.Detail, _vm.EndedAt ?? DateTimeOffset.UtcNow) };
            _vm.Fleet = _record.FleetView();
            WriteRecord(_record);
        });
    }

    /// <summary>A VM whose record has an end, and whose node (with its details and console) is gone.</summary>
    private void EndedElsewhere()
    {
        Receive<CreateFleetVm>(_ => Sender.Tell(FleetAnswer.Problem(409, "VM exists", $"a VM with id '{_id}' exists already")));
        Receive<FleetVmCall>(call => Sender.Tell(call.Kind == FleetVmCallKind.Show
            ? FleetAnswer.Json(200, _record!.EndedView())
            : FleetAnswer.Problem(409, "VM ended", $"VM {_id} ended on {_record!.OwnerAddress}, which is gone with its console")));
    }

    private void StopCheckpointer()
    {
        if (Context.Child("checkpointer") is var c && !c.Equals(ActorRefs.Nobody)) Context.Stop(c);
    }

    private void WriteRecord(VmRecord record)
    {
        var (log, id) = (_log, _id);
        FleetRecords.WriteAsync(Context.System, record, _recovery.ConsistencyTimeout).ContinueWith(t =>
        {
            if (!t.IsCompletedSuccessfully || !t.Result) log.Warning("VM {0}: no majority confirmed its record in time (gossip spreads it)", id);
        }, TaskScheduler.Default);
    }
}

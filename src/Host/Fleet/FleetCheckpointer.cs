using System.Diagnostics;
using Akka.Actor;
using Akka.Event;
using KvmActors.Host.Serve;

namespace KvmActors.Host.Fleet;

/// <summary>The checkpointer wrote a checkpoint and a majority has the record naming it.</summary>
public sealed record VmCheckpointed(VmRecord Record, TimeSpan Elapsed);

/// <summary>The record names another owner: this node lost the VM (it was downed, and the VM runs elsewhere now).</summary>
public sealed record VmOwnershipLost(string? Owner);

/// <summary>
/// A VM entity's child with guest.fleet.checkpoint-interval set: every interval it snapshots the VM (the guest paused
/// meanwhile) into its folder under <see cref="RecoverySettings.CheckpointDir"/> and records the checkpoint with
/// write-majority. Fenced: before writing anything it reads the record from a majority and writes only if this node
/// (this incarnation) is still the owner; when no majority answers (a node cut off, or one just thawed from SIGSTOP)
/// it writes nothing, so a node the others downed never writes into the shared folder.
/// </summary>
public sealed class FleetCheckpointer : ReceiveActor, IWithTimers
{
    private sealed record Tick;
    private sealed record Round(object? Result);

    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly VmHost _host;
    private readonly HostedVm _vm;
    private readonly RecoverySettings _settings;
    private readonly string _self;
    private readonly ActorSystem _system;
    private readonly TimeSpan _interval;
    private bool _busy;

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(VmHost host, HostedVm vm, TimeSpan interval, RecoverySettings settings) =>
        Akka.Actor.Props.Create(() => new FleetCheckpointer(host, vm, interval, settings));

    public FleetCheckpointer(VmHost host, HostedVm vm, TimeSpan interval, RecoverySettings settings)
    {
        _host = host;
        _vm = vm;
        _settings = settings;
        _system = Context.System;
        _self = FleetRecords.SelfOwner(_system);
        _interval = interval;
        Receive<Tick>(_ =>
        {
            if (_busy) return; // a slow round (a loaded machine) is not queued behind by more rounds
            _busy = true;
            RunAsync().ContinueWith(t => new Round(t.IsCompletedSuccessfully ? t.Result : null), TaskScheduler.Default).PipeTo(Self);
        });
        Receive<Round>(r =>
        {
            _busy = false;
            if (r.Result is not null) Context.Parent.Tell(r.Result);
        });
    }

    protected override void PreStart() => Timers.StartPeriodicTimer("checkpoint", new Tick(), _interval);

    /// <summary>The VM's folder of checkpoints (one subfolder per checkpoint, the newest recorded one kept).</summary>
    public static string FolderOf(RecoverySettings settings, string id) => Path.Combine(settings.CheckpointDir, id);

    private async Task<object?> RunAsync()
    {
        var sw = Stopwatch.StartNew();
        var (ok, record) = await FleetRecords.ReadMajorityAsync(_system, _vm.Id, _settings.ConsistencyTimeout);
        if (!ok)
        {
            _log.Warning("VM {0}: checkpoint skipped: no majority confirmed this node still owns it", _vm.Id);
            return null;
        }
        if (record is null || record.Owner != _self) return new VmOwnershipLost(record?.Owner);
        if (_vm.State == VmStates.Ended) return null;
        // Named by time and writer, so that every folder in the VM's folder says which incarnation of which node wrote it.
        var writer = _self[(_self.LastIndexOf('@') + 1)..].Replace(':', '-').Replace('#', '-');
        var dir = Path.Combine(FolderOf(_settings, _vm.Id), $"{DateTimeOffset.UtcNow:yyyyMMddTHHmmssfff}-{writer}");
        Directory.CreateDirectory(FolderOf(_settings, _vm.Id));
        var (status, answer, offset) = await _host.SnapshotToAsync(_vm, dir, resume: true, CancellationToken.None);
        if (status != 200)
        {
            _log.Warning("VM {0}: checkpoint failed ({1}): {2}", _vm.Id, status, answer);
            TryDelete(dir);
            return null;
        }
        var next = record with { Checkpoint = new VmCheckpoint(dir, DateTimeOffset.UtcNow, offset) };
        if (!await FleetRecords.WriteAsync(_system, next, _settings.ConsistencyTimeout))
        {
            // This node has the record; the older checkpoint stays too, since a majority may still name it.
            _log.Warning("VM {0}: checkpoint {1} written, but no majority confirmed its record in time", _vm.Id, dir);
            return new VmCheckpointed(next, sw.Elapsed);
        }
        foreach (var old in Directory.EnumerateDirectories(FolderOf(_settings, _vm.Id)))
            if (old != dir) TryDelete(old);
        _log.Debug("VM {0}: checkpoint at console offset {1} in {2:F0} ms", _vm.Id, offset, sw.Elapsed.TotalMilliseconds);
        return new VmCheckpointed(next, sw.Elapsed);
    }

    private void TryDelete(string dir)
    {
        try { Directory.Delete(dir, recursive: true); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { _log.Warning("could not delete the old checkpoint {0}: {1}", dir, e.Message); }
    }
}

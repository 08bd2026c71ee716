using System.Diagnostics;
using Akka.Actor;
using Akka.Event;
using KvmActors.Runtime.Snapshot;
using KvmActors.Runtime.Vcpu;
using KvmActors.Sdk;

namespace KvmActors.Runtime.Vm;

// Snapshot: the VM pauses its vCPUs (as PauseVm does), has each finish the exit it last handled (so its state is
// read at an instruction boundary: VcpuActor.Snapshot.cs), reads every vCPU's and the irqchip's state from KVM,
// asks every device for its own state, then writes the directory and resumes (unless told not to, or it was
// paused before). One snapshot at a time; a VM that ends meanwhile answers the requester with the reason.
public sealed partial class VmActor
{
    private sealed class SnapshotJob(IActorRef requester, string? directory, bool resume, bool wasPaused)
    {
        public readonly IActorRef Requester = requester;
        /// <summary>Where to write it; null: a migration's final state, answered in a message (VmActor.Migration.cs).</summary>
        public readonly string? Directory = directory;
        public readonly bool Resume = resume;
        public readonly bool WasPaused = wasPaused;
        public readonly Stopwatch Clock = Stopwatch.StartNew();
        public readonly HashSet<int> VcpusPending = new();
        public readonly Dictionary<int, bool> Halted = new();
        public readonly HashSet<IActorRef> DevicesPending = new();
        public readonly Dictionary<string, SnapshotDevice> Devices = new();
        public IReadOnlyList<SnapshotVcpu>? Vcpus;
        public bool Paused;
    }

    private SnapshotJob? _snapshot;
    private bool _pausedByRequest; // a PauseVm without its ResumeVm yet: a snapshot leaves the VM paused then
    private const string SnapshotTimer = "snapshot-timeout";

    private void OnSnapshotVm(SnapshotVm request)
    {
        if (CannotCapture(forMigration: false) is { } refusal)
        {
            Sender.Tell(new VmSnapshotFailed(_spec.Name, refusal));
            return;
        }
        StartCapture(new SnapshotJob(Sender, request.Directory, request.Resume, _pausedByRequest));
    }

    /// <summary>Why this VM's state cannot be captured now (null: it can).</summary>
    private string? CannotCapture(bool forMigration)
    {
        if (_end is not null) return "the VM is ending";
        if (_snapshot is not null) return "a snapshot of this VM is already being taken";
        if (_migration is not null && !forMigration) return "the VM is being migrated";
        if (_machine is null || !DevicesStarted || _vcpuActors.Count < _spec.Machine.VcpuCount) return "the VM is still starting";
        if (_spec.SourceConfig.Length == 0) return "this VM was not built from a config, so its state could not rebuild it";
        if (_machine.Memory.Regions.FirstOrDefault(r => r.Size > int.MaxValue) is { } large)
            return $"memory region '{large.Name}' is larger than 2 GiB, which snapshots and migration do not handle yet";
        return null;
    }

    private void StartCapture(SnapshotJob job)
    {
        _snapshot = job;
        Timers.StartSingleTimer(SnapshotTimer, SnapshotTimedOut.Instance, _settings.Capture);
        PauseFor(Self);
    }

    /// <summary>Every vCPU is out of KVM_RUN: have each finish its last exit.</summary>
    private void SnapshotPaused()
    {
        if (_snapshot is not { Paused: false } job) return;
        job.Paused = true;
        foreach (var (actor, id) in _vcpuActors)
        {
            job.VcpusPending.Add(id);
            actor.Tell(new CompleteVcpuExit());
        }
    }

    private void OnVcpuExitCompleted(VcpuExitCompleted done)
    {
        if (_snapshot is not { } job || !job.VcpusPending.Remove(done.VcpuId)) return;
        if (done.Error is not null)
        {
            FailSnapshot($"vcpu {done.VcpuId}: {done.Error}");
            return;
        }
        job.Halted[done.VcpuId] = done.Halted;
        if (job.VcpusPending.Count > 0) return;
        // Every vCPU is at an instruction boundary and none is in KVM_RUN: KVM's state can be read from here.
        var machine = _machine!;
        try
        {
            job.Vcpus = machine.Vcpus.Select(v => new SnapshotVcpu(job.Halted[v.Id], VcpuStateIo.Capture(machine.Kvm, v, machine.HasIrqchip))).ToList();
        }
        catch (KvmActorsException e)
        {
            FailSnapshot($"reading the vCPU state: {e.Message}");
            return;
        }
        foreach (var device in _devices.Keys)
        {
            job.DevicesPending.Add(device);
            device.Tell(new SaveDeviceState());
        }
        if (job.DevicesPending.Count == 0) WriteSnapshot(job);
    }

    private void OnDeviceStateSaved(DeviceStateSaved saved)
    {
        if (_snapshot is not { } job || !job.DevicesPending.Remove(Sender)) return;
        var type = _spec.Devices.First(d => d.Name == saved.Device).Type;
        job.Devices[saved.Device] = new SnapshotDevice(saved.Device, type, saved.State);
        if (job.DevicesPending.Count == 0) WriteSnapshot(job);
    }

    private void WriteSnapshot(SnapshotJob job)
    {
        var machine = _machine!;
        var pauseTime = job.Clock.Elapsed;
        try
        {
            var state = CaptureState(job);
            if (job.Directory is null)
            {
                Timers.Cancel(SnapshotTimer);
                _snapshot = null;
                MigrationStateCaptured(job.Requester, state); // the guest stays paused: it ends or runs on with EndMigration
                return;
            }
            // Written here, on the VM actor's thread, while the guest is paused: the memory must not change under the
            // write, nor be unmapped (the VM is released only by this actor, after this returns).
            var written = SnapshotFiles.Write(job.Directory, state, machine.Memory);
            var stats = new SnapshotStats(written.MemoryBytes, written.DataBytes, written.StateBytes, pauseTime, written.Elapsed);
            _log.Info("VM '{0}': snapshot written to {1}: {2} KiB of memory ({3} KiB of data), state {4} KiB, paused for {5:F1} ms",
                _spec.Name, job.Directory, stats.MemoryBytes / 1024, stats.DiskBytes / 1024, stats.StateBytes / 1024, job.Clock.Elapsed.TotalMilliseconds);
            EndSnapshot(job, new VmSnapshotted(_spec.Name, Path.GetFullPath(job.Directory), stats, job.Clock.Elapsed,
                state.Devices.Where(d => d.State is null).Select(d => d.Name).ToList()));
        }
        catch (Exception e) when (e is KvmActorsException or IOException or UnauthorizedAccessException)
        {
            FailSnapshot(e.Message);
        }
    }

    private SnapshotState CaptureState(SnapshotJob job)
    {
        var machine = _machine!;
        return new SnapshotState
            {
                WrittenBy = typeof(VmActor).Assembly.GetName().Version?.ToString() ?? "?",
                TakenAt = DateTimeOffset.UtcNow,
                VmName = _spec.Name,
                Guest = new SnapshotGuest(_spec.SourceFile, _spec.BaseDirectory, _spec.SourceConfig),
                Irqchip = machine.HasIrqchip,
                Memory = machine.Memory.Regions.Select((r, i) => new SnapshotRegion(r.Name, r.GuestAddress, r.Size, r.ReadOnly, SnapshotFiles.RegionFileName(i, r.Name))).ToList(),
                Vcpus = job.Vcpus!,
                Vm = VmStateIo.Capture(machine.Vm, machine.HasIrqchip && !machine.SplitIrqchip),
                Devices = _spec.Devices.Select(d => job.Devices[d.Name]).ToList(),
            };
    }

    private void FailSnapshot(string reason)
    {
        if (_snapshot is not { } job) return;
        _log.Warning("VM '{0}': {1} failed: {2}", _spec.Name, job.Directory is null ? "migration's final state" : $"snapshot to {job.Directory}", reason);
        EndSnapshot(job, job.Directory is null ? new MigrationRefused(reason) : new VmSnapshotFailed(_spec.Name, reason));
    }

    private void EndSnapshot(SnapshotJob job, object answer)
    {
        Timers.Cancel(SnapshotTimer);
        _snapshot = null;
        // The guest runs on unless asked not to, or a PauseVm had paused it before; a failed snapshot resumes it too.
        var resume = _end is null && !job.WasPaused && (job.Resume || answer is VmSnapshotFailed);
        if (resume) ResumeVcpus();
        else if (_end is null) _pausedByRequest = true; // paused now, as by a PauseVm: ResumeVm runs it on
        job.Requester.Tell(answer);
    }

    /// <summary>A restored device could not take its saved state: the VM ends before any vCPU ran.</summary>
    private void OnDeviceStateRestored(DeviceStateRestored restored)
    {
        if (restored.Error is { } error)
            EndVm(VmEndReason.Fault, $"device '{restored.Device}': its saved state cannot be restored: {error}", 2, null);
    }

    private sealed class SnapshotTimedOut { public static readonly SnapshotTimedOut Instance = new(); }
}

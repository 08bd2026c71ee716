using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Akka.Actor;
using KvmActors.Runtime.Config;
using KvmActors.Runtime.Devices;
using KvmActors.Runtime.Snapshot;
using KvmActors.Runtime.Vm;
using KvmActors.Sdk;
using Serilog;

namespace KvmActors.Host.Serve;

/// <summary>One VM the host runs: its actor, state, console ring and input, and its end once it ends.</summary>
public sealed class HostedVm
{
    public required string Id { get; init; }
    public required string Name { get; init; }
    public required int Vcpus { get; init; }
    public required ulong MemoryBytes { get; init; }
    /// <summary>When the VM was created; settable, since a fleet migration keeps the source's (FleetDrain).</summary>
    public required DateTimeOffset CreatedAt { get; set; }
    public required ConsoleRing Console { get; init; }
    public required MemoryInput Input { get; init; }
    public required long CreatedTimestamp { get; init; }
    public IActorRef Actor { get; set; } = ActorRefs.Nobody;
    public Task<VmEnded> EndedTask { get; set; } = Task.FromResult<VmEnded>(null!);
    public volatile string State = VmStates.Creating;
    public VmEnded? Ended { get; set; }
    public int ExitStatus { get; set; }
    public DateTimeOffset? EndedAt { get; set; }
    /// <summary>Set when the VM was migrated: where it runs on (this copy then ends as Migrated).</summary>
    public Migration.MigrationTarget? MigratedTo { get; set; }
    /// <summary>The fleet's word on this VM (serve --cluster): its last checkpoint, and how it came back after its node died.</summary>
    public JsonObject? Fleet { get; set; }
    public TimeSpan Duration => (EndedAt ?? DateTimeOffset.UtcNow) - CreatedAt;
    /// <summary>Serialises pause, resume and stop of this VM.</summary>
    public SemaphoreSlim Control { get; } = new(1, 1);
    /// <summary>Completes once the end is recorded (state, report, resources given back).</summary>
    public TaskCompletionSource Finished { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
}

/// <summary>
/// The VMs of one host process: creation within the host's limits, pause/resume/stop, the end of each VM
/// (its report, its resources given back) and a clean stop of all at shutdown. Each VM is its own top-level
/// actor tree, so one VM's failure (config error, guest failure, exhausted restart budget) ends only that VM.
/// </summary>
public sealed class VmHost
{
    private readonly ActorSystem _system;
    private readonly VmSettings _vmSettings;
    private readonly HostIo _io;
    private readonly ConcurrentDictionary<string, HostedVm> _vms = new();
    private readonly ConcurrentQueue<string> _endedOrder = new();
    private readonly object _limitsGate = new();
    private int _liveVms, _liveVcpus;
    private ulong _liveMemory;
    private bool _shuttingDown;

    /// <summary>Set once the host stops all its VMs (shutdown): their ends are not the guests' or a user's doing.</summary>
    public bool ShuttingDown => _shuttingDown;

    public HostSettings Settings { get; }
    public string GuestDir { get; }
    /// <summary>Where snapshots are written and restored from: API paths are relative to it and cannot leave it.</summary>
    public string SnapshotDir { get; }
    public string? ReportDir { get; }
    public ServeMetrics Metrics { get; }

    public VmHost(ActorSystem system, HostSettings settings, string guestDir, string? reportDir, string? snapshotDir = null)
    {
        _system = system;
        Settings = settings;
        GuestDir = guestDir;
        SnapshotDir = snapshotDir ?? Path.Combine(guestDir, "snapshots");
        ReportDir = reportDir;
        _vmSettings = RuntimeSettingsBinder.Bind(system.Settings.Config, "<host config>", BuiltInDevices.Assemblies);
        _io = HostIo.For(system);
        Metrics = new ServeMetrics(CountByState);
    }

    public IReadOnlyDictionary<string, int> CountByState() =>
        _vms.Values.GroupBy(v => v.State).ToDictionary(g => g.Key, g => g.Count());

    public IEnumerable<HostedVm> All => _vms.Values.OrderBy(v => v.CreatedTimestamp);

    public HostedVm? Find(string id) => _vms.TryGetValue(id, out var vm) ? vm : null;

    /// <param name="id">The VM's id when the caller chose it (the fleet's sharded VMs); else a new one.</param>
    public HostedVm Create(GuestRequest request, string? id = null)
    {
        try
        {
            return CreateCore(request, id);
        }
        catch (ProblemException p)
        {
            Metrics.Refused(p.Status);
            throw;
        }
    }

    private HostedVm CreateCore(GuestRequest request, string? chosenId)
    {
        if (_shuttingDown) throw new ProblemException(503, "Shutting down", "the host is stopping its VMs");
        if (chosenId is not null && _vms.ContainsKey(chosenId)) throw new ProblemException(409, "VM exists", $"a VM with id '{chosenId}' exists already");
        var id = chosenId ?? NewId();
        return Admit(id, GuestPreparation.Prepare(request, GuestDir, id), null);
    }

    /// <summary>
    /// A VM built from a snapshot directory (inside the snapshot directory), run on from where it was saved; its
    /// console is attached to the new VM's API, whatever it was attached to where it was saved.
    /// </summary>
    public HostedVm Restore(string path, string? name) => RestoreFrom(SnapshotPath(path, "restore"), path, name);

    /// <summary>A VM built from the snapshot directory <paramref name="full"/> (any path: the fleet's checkpoints), under
    /// <paramref name="chosenId"/> when given, its console going on from <paramref name="consoleOffset"/>.</summary>
    public HostedVm RestoreFrom(string full, string shown, string? name, string? chosenId = null, long consoleOffset = 0)
    {
        try
        {
            if (_shuttingDown) throw new ProblemException(503, "Shutting down", "the host is stopping its VMs");
            if (chosenId is not null && _vms.ContainsKey(chosenId)) throw new ProblemException(409, "VM exists", $"a VM with id '{chosenId}' exists already");
            var id = chosenId ?? NewId();
            var (spec, restore) = LoadSnapshotFrom(full, shown, id, name);
            return Admit(id, spec, restore, consoleOffset);
        }
        catch (ProblemException p)
        {
            Metrics.Refused(p.Status);
            throw;
        }
    }

    /// <summary>The snapshot at <paramref name="path"/> (relative to, and confined to, the snapshot directory) as a spec to run.</summary>
    public (GuestSpec Spec, VmRestore Restore) LoadSnapshot(string path, string id, string? name) =>
        LoadSnapshotFrom(SnapshotPath(path, "restore"), path, id, name);

    private (GuestSpec Spec, VmRestore Restore) LoadSnapshotFrom(string full, string path, string id, string? name)
    {
        try
        {
            var loaded = SnapshotFiles.Load(full);
            // Untrusted like a posted guest: its file paths stay inside the guest directory and resolve there.
            GuestPreparation.CheckSavedPaths(loaded.State.Guest.Config, GuestDir);
            var snapshot = loaded with { State = loaded.State with { Guest = loaded.State.Guest with { BaseDirectory = GuestDir } } };
            var attached = $"{AttachedIo.Prefix}{id}";
            var sets = GuestConfigLoader.ConsoleRemap(snapshot.State.Guest.Config, (option, value) =>
                value.StartsWith(AttachedIo.Prefix, StringComparison.Ordinal) || option == "sink" && value is "stdout" or "stderr" ? attached : null).ToList();
            if (name is { Length: > 0 }) sets.Add($"guest.name = {JsonSerializer.Serialize(name)}");
            return (GuestConfigLoader.FromSnapshot(snapshot, sets), VmRestore.From(snapshot));
        }
        catch (KvmActorsException e) when (e is SnapshotException or ConfigException)
        {
            throw new ProblemException(422, "Snapshot cannot be restored", e.Message, new Dictionary<string, object?> { ["path"] = path });
        }
    }

    /// <summary>A snapshot path from a request: relative to the snapshot directory, and never outside it.</summary>
    public string SnapshotPath(string path, string key)
    {
        if (path.Length == 0) throw new ProblemException(400, "Bad request", $"\"{key}\" is empty: name a directory inside the snapshot directory {SnapshotDir}");
        Directory.CreateDirectory(SnapshotDir); // made on first use, so it can be resolved (symlinks) and checked against
        var root = GuestPreparation.RealPath(SnapshotDir) ?? SnapshotDir;
        try { GuestPreparation.CheckPath(path, key, root); }
        catch (ProblemException)
        {
            throw new ProblemException(400, "Path outside the snapshot directory", $"{key}: '{path}' is outside the snapshot directory {root}",
                new Dictionary<string, object?> { ["key"] = key });
        }
        return Path.GetFullPath(Path.Combine(root, path));
    }

    /// <summary>Migrate a running VM to another kvmactors serve (<c>unix:PATH</c> or <c>http://HOST:PORT</c>); one control request at a time per VM.</summary>
    /// <param name="keepId">A fleet migration: the VM keeps this id (its own) and its console on the target.</param>
    public async Task<Migration.MigrationSender.Outcome> MigrateAsync(HostedVm vm, string to, CancellationToken ct, string? keepId = null)
    {
        await vm.Control.WaitAsync(ct);
        try
        {
            if (vm.State == VmStates.Ended)
                return new(409, new JsonObject { ["title"] = "Cannot migrate", ["detail"] = $"VM {vm.Id} has ended", ["status"] = 409 });
            return await new Migration.MigrationSender(vm, to, Settings, keepId).RunAsync(ct);
        }
        finally { vm.Control.Release(); }
    }

    /// <summary>
    /// Save a running or paused VM into <paramref name="path"/> (inside the snapshot directory). The answer's console
    /// offset is where the snapshot's output goes on: a restored VM's first byte is the source console's byte there.
    /// </summary>
    public Task<(int Status, object Answer, long ConsoleOffset)> SnapshotAsync(HostedVm vm, string path, bool resume, CancellationToken ct) =>
        SnapshotToAsync(vm, SnapshotPath(path, "path"), resume, ct);

    /// <summary>As <see cref="SnapshotAsync"/>, into the directory <paramref name="full"/> (any path: the fleet's checkpoints).</summary>
    public async Task<(int Status, object Answer, long ConsoleOffset)> SnapshotToAsync(HostedVm vm, string full, bool resume, CancellationToken ct)
    {
        await vm.Control.WaitAsync(ct);
        try
        {
            if (vm.State == VmStates.Ended) return (409, new VmSnapshotFailed(vm.Name, $"VM {vm.Id} has ended"), vm.Console.Total);
            // The VM resumes before it answers when told to, so the console would have moved on by then: it is asked
            // to stay paused, the console's total read, and then resumed here (unless a pause request holds it).
            var resumeHere = resume && vm.State != VmStates.Paused;
            var ask = vm.Actor.Ask<object>(new SnapshotVm(full, resume && !resumeHere), Settings.RequestTimeout + TimeSpan.FromSeconds(30), ct);
            var first = await Task.WhenAny(ask, vm.Finished.Task);
            if (first != ask) return (409, new VmSnapshotFailed(vm.Name, $"VM {vm.Id} ended during the snapshot"), vm.Console.Total);
            object answer;
            try { answer = await ask; }
            catch (Exception e) when (e is AskTimeoutException or TaskCanceledException)
            {
                return (504, new VmSnapshotFailed(vm.Name, "the VM did not answer the snapshot in time"), vm.Console.Total);
            }
            var offset = vm.Console.Total;
            if (answer is VmSnapshotted done)
            {
                if (resumeHere) await ResumeAfterSnapshotAsync(vm);
                else if (!resume && vm.State != VmStates.Ended) vm.State = VmStates.Paused;
                Log.ForContext("VmId", vm.Id).Information("VM {VmId} snapshotted to {Path} in {Ms:F1} ms", vm.Id, done.Directory, done.Elapsed.TotalMilliseconds);
                return (200, done, offset);
            }
            return (409, answer, offset);
        }
        finally { vm.Control.Release(); }
    }

    private async Task ResumeAfterSnapshotAsync(HostedVm vm)
    {
        var ask = vm.Actor.Ask<VmResumed>(new ResumeVm(), Settings.RequestTimeout);
        if (await Task.WhenAny(ask, vm.Finished.Task) == ask && ask.IsCompletedSuccessfully) return;
        if (vm.State != VmStates.Ended)
        {
            vm.State = VmStates.Paused;
            Log.ForContext("VmId", vm.Id).Warning("VM {VmId} did not answer the resume after its snapshot: it stays paused", vm.Id);
        }
    }

    /// <summary>
    /// A guest the host program loaded itself from a file it trusts (kvmactors test), its console already attached to
    /// <paramref name="id"/> (<see cref="GuestPreparation.ConsoleSets"/>): admitted and ended like a posted one.
    /// </summary>
    public HostedVm Run(GuestSpec spec, string id)
    {
        if (_vms.ContainsKey(id)) throw new ProblemException(409, "VM exists", $"a VM with id '{id}' exists already");
        return Admit(id, spec, null);
    }

    /// <summary>Whether a VM of this size fits within the host's limits now (a migration asks before its first page).</summary>
    public void CheckCapacity(int vcpus, ulong memory)
    {
        lock (_limitsGate) CheckLimits(vcpus, memory);
    }

    /// <summary>Set while the fleet drains this node: no VM is admitted here any more (create, restore, incoming migration).</summary>
    public bool Draining { get; set; }

    private void CheckLimits(int vcpus, ulong memory)
    {
        const string draining = "this node is draining: its VMs move to other nodes and it takes no new ones";
        if (Draining) throw new ProblemException(503, "Node draining", draining, new Dictionary<string, object?> { ["reason"] = draining });
        if (_liveVms + 1 > Settings.MaxVms)
            throw Limit(429, "Too many VMs", $"host.max-vms = {Settings.MaxVms} VMs exist already", "host.max-vms");
        if (_liveVcpus + vcpus > Settings.MaxVcpusTotal)
            throw Limit(429, "Too many vCPUs",
                $"{vcpus} more vCPU(s) would exceed host.max-vcpus-total = {Settings.MaxVcpusTotal} ({_liveVcpus} in use)", "host.max-vcpus-total");
        if (_liveMemory + memory > Settings.MaxMemoryTotal)
            throw Limit(507, "Not enough memory",
                $"{memory} more bytes of guest RAM would exceed host.max-memory-total = {Settings.MaxMemoryTotal} ({_liveMemory} in use)", "host.max-memory-total");
    }

    /// <summary>
    /// The end of an incoming migration: the VM built from the final state and the staged memory (copied into the
    /// VM's own during its set-up, which this waits for), attached to the console here, offsets going on from the source's.
    /// </summary>
    /// <param name="load">Fills region N of the new VM's memory from what the stream brought.</param>
    /// <param name="keepId">The id the VM keeps (a fleet migration); else a new one.</param>
    /// <param name="history">The source console's kept bytes before <paramref name="consoleOffset"/> (a fleet migration).</param>
    public async Task<HostedVm> AdmitMigratedAsync(Migration.MigrationHello hello, SnapshotState state, Action<int, Span<byte>> load, long consoleOffset,
        CancellationToken ct, string? keepId = null, byte[]? history = null)
    {
        if (_shuttingDown) throw new ProblemException(503, "Shutting down", "the host is stopping its VMs");
        if (keepId is not null && _vms.ContainsKey(keepId)) throw new ProblemException(409, "VM exists", $"a VM with id '{keepId}' exists already");
        var id = keepId ?? NewId();
        GuestSpec spec;
        GuestPreparation.CheckSavedPaths(state.Guest.Config, GuestDir);
        state = state with { Guest = state.Guest with { BaseDirectory = GuestDir } };
        try
        {
            var attached = $"{AttachedIo.Prefix}{id}";
            var sets = GuestConfigLoader.ConsoleRemap(state.Guest.Config, (option, value) =>
                value.StartsWith(AttachedIo.Prefix, StringComparison.Ordinal) || option == "sink" && value is "stdout" or "stderr" ? attached : null);
            spec = GuestConfigLoader.FromSnapshot(state, $"migration from {hello.SourceId}", sets);
        }
        catch (ConfigException e) { throw new ProblemException(422, "Migration refused", e.Message); }
        var restore = new VmRestore(state, (index, _, bytes) => load(index, bytes));
        var vm = Admit(id, spec, restore, consoleOffset, history);
        // Only a VM that runs here may end the source: wait until its devices took their state and its vCPUs run
        // (the staged memory is copied in its set-up before that), or until it ended trying.
        var started = vm.Actor.Ask<VmStarted>(new AwaitVmStarted(), Settings.RequestTimeout, ct);
        var first = await Task.WhenAny(started, vm.Finished.Task);
        if (first == started && started.IsCompletedSuccessfully) return vm;
        if (vm.State != VmStates.Ended) vm.Actor.Tell(new StopVm("the migrated VM did not start in time"));
        await vm.Finished.Task.WaitAsync(Settings.RequestTimeout, ct);
        throw new ProblemException(422, "Migration failed", $"the migrated VM could not run here: {vm.Ended?.Detail ?? "it did not start in time"}");
    }

    /// <summary>The guest RAM a VM counts against host.max-memory-total: its read-write regions.</summary>
    public static ulong RamOf(GuestSpec spec) => spec.Machine.Memory.Where(r => !r.ReadOnly).Aggregate(0UL, (a, r) => a + r.Size);

    /// <summary>Raised after a VM took or gave back its share of the limits (the fleet publishes the free capacity).</summary>
    public event Action? LiveChanged;

    /// <summary>What the live VMs use now.</summary>
    public (int Vms, int Vcpus, ulong Memory) Live
    {
        get { lock (_limitsGate) return (_liveVms, _liveVcpus, _liveMemory); }
    }

    private HostedVm Admit(string id, GuestSpec spec, VmRestore? restore, long consoleOffset = 0, byte[]? history = null)
    {
        var memory = RamOf(spec);
        lock (_limitsGate)
        {
            CheckLimits(spec.Machine.VcpuCount, memory);
            _liveVms++;
            _liveVcpus += spec.Machine.VcpuCount;
            _liveMemory += memory;
        }
        LiveChanged?.Invoke();

        var vm = new HostedVm
        {
            Id = id, Name = spec.Name, Vcpus = spec.Machine.VcpuCount, MemoryBytes = memory, CreatedAt = DateTimeOffset.UtcNow,
            CreatedTimestamp = Stopwatch.GetTimestamp(),
            Console = new ConsoleRing(Settings.ConsoleRing, Metrics.ConsoleBytes, consoleOffset - (history?.Length ?? 0)), Input = new MemoryInput(),
        };
        if (history is not null) vm.Console.Write(history); // before the guest runs: its output goes on after these
        _vms[id] = vm;
        _io.Attached.Attach(id, vm.Console, vm.Input);
        Metrics.Created();
        try
        {
            var (actor, ended) = VmLauncher.Launch(_system, spec, _vmSettings, "vm-" + id, restore);
            vm.Actor = actor;
            vm.EndedTask = ended;
        }
        catch (Exception e)
        {
            // Could not even start the actor: the VM ends here as a fault, like any other end.
            var fault = new VmEnded(spec.Name, VmEndReason.Fault, e.Message, 1, null, []);
            vm.EndedTask = Task.FromResult(fault);
        }
        Log.ForContext("VmId", id).Information("VM {VmId} ({VmName}) " + (restore is null ? "created" : "restored") + ": {Vcpus} vCPU(s), {MemoryKiB} KiB", id, spec.Name, spec.Machine.VcpuCount, memory / 1024);
        // The VM actor answers Identify only after its setup (PreStart) ran: then it runs the guest.
        vm.Actor.Ask<ActorIdentity>(new Identify(id), TimeSpan.FromSeconds(30)).ContinueWith(_ =>
        {
            if (vm.State == VmStates.Creating) vm.State = VmStates.Running;
        }, TaskContinuationOptions.ExecuteSynchronously);
        vm.EndedTask.ContinueWith(t => OnEnded(vm, t), TaskScheduler.Default);
        return vm;
    }

    private static ProblemException Limit(int status, string title, string detail, string key) =>
        new(status, title, detail, new Dictionary<string, object?> { ["key"] = key, ["reason"] = detail });

    private void OnEnded(HostedVm vm, Task<VmEnded> t)
    {
        var ended = t.IsCompletedSuccessfully
            ? t.Result
            : new VmEnded(vm.Name, VmEndReason.Fault, t.Exception?.GetBaseException().Message ?? "ended", 1, null, []);
        vm.Ended = ended;
        vm.ExitStatus = ExitStatusOf(ended);
        vm.EndedAt = DateTimeOffset.UtcNow;
        vm.State = VmStates.Ended;
        vm.Console.Close();
        vm.Input.Complete();
        _io.Attached.Detach(vm.Id);
        lock (_limitsGate)
        {
            _liveVms--;
            _liveVcpus -= vm.Vcpus;
            _liveMemory -= vm.MemoryBytes;
        }
        LiveChanged?.Invoke();
        Metrics.Ended(vm.Id, ended);
        var exits = ended.Vcpus.Sum(v => v.Exits);
        var restarts = ended.ActorFailures.Count(f => f.Restarted);
        Log.ForContext("VmId", vm.Id).Information(
            "VM {VmId} ({VmName}) ended: {Reason}: {Detail} (exit status {ExitStatus}, {Vcpus} vCPU(s), {Exits} exits, {Restarts} restart(s))",
            vm.Id, vm.Name, ended.Reason, ended.Detail, vm.ExitStatus, ended.Vcpus.Count, exits, restarts);
        if (ReportDir is { } dir)
        {
            try { File.WriteAllText(Path.Combine(dir, $"{vm.Id}.json"), Report(vm).ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n"); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                Log.ForContext("VmId", vm.Id).Warning("VM {VmId}: could not write its report: {Error}", vm.Id, e.Message);
            }
        }
        _endedOrder.Enqueue(vm.Id);
        while (_endedOrder.Count > Settings.MaxEndedKept && _endedOrder.TryDequeue(out var old))
            if (_vms.TryRemove(old, out var forgotten)) Metrics.Forget(old, forgotten.Ended);
        vm.Finished.TrySetResult();
    }

    /// <summary>The VM's end report (the same JSON as <c>run --report</c>), with its id.</summary>
    public static JsonObject Report(HostedVm vm)
    {
        var report = EndReport.ToJson(vm.Ended!, vm.ExitStatus, vm.Duration);
        report["id"] = vm.Id;
        return report;
    }

    public static int ExitStatusOf(VmEnded ended) => ended.Reason switch
    {
        VmEndReason.Halted or VmEndReason.ResetRequested or VmEndReason.StoppedOnRequest or VmEndReason.Migrated => ExitCodes.Ok,
        VmEndReason.GuestExit => ended.ExitStatus,
        VmEndReason.GuestFailure => ExitCodes.GuestFailure,
        _ => ended.ExitStatus == 0 ? ExitCodes.GuestFailure : ended.ExitStatus,
    };

    public enum ControlOutcome { Done, Conflict, TimedOut }

    public Task<ControlOutcome> PauseAsync(HostedVm vm, CancellationToken ct) =>
        ChangeStateAsync<VmPaused>(vm, new PauseVm(), VmStates.Paused, already: v => v.State == VmStates.Paused, "paused", ct);

    public Task<ControlOutcome> ResumeAsync(HostedVm vm, CancellationToken ct) =>
        ChangeStateAsync<VmResumed>(vm, new ResumeVm(), VmStates.Running, already: v => v.State is VmStates.Running or VmStates.Creating, "resumed", ct);

    /// <summary>
    /// Pause or resume: idempotent (<paramref name="already"/> is done at once), a conflict once the VM has ended
    /// (also when it ends while the VM actor is asked), one request at a time per VM.
    /// </summary>
    private async Task<ControlOutcome> ChangeStateAsync<TReply>(HostedVm vm, object request, string target, Func<HostedVm, bool> already, string verb,
        CancellationToken ct)
    {
        await vm.Control.WaitAsync(ct);
        try
        {
            if (already(vm)) return ControlOutcome.Done;
            if (vm.State == VmStates.Ended) return ControlOutcome.Conflict;
            var ask = vm.Actor.Ask<TReply>(request, Settings.RequestTimeout, ct);
            var first = await Task.WhenAny(ask, vm.Finished.Task);
            if (first != ask) return ControlOutcome.Conflict;
            try { await ask; } catch (Exception e) when (e is AskTimeoutException or TaskCanceledException) { return ControlOutcome.TimedOut; }
            if (vm.State != VmStates.Ended) vm.State = target;
            Log.ForContext("VmId", vm.Id).Information("VM {VmId} " + verb, vm.Id);
            return vm.State == target ? ControlOutcome.Done : ControlOutcome.Conflict;
        }
        finally { vm.Control.Release(); }
    }

    /// <summary>Stops the VM (a no-op when it has ended) and waits until its end is recorded.</summary>
    public async Task<bool> StopAsync(HostedVm vm, string why, TimeSpan timeout)
    {
        if (vm.State != VmStates.Ended) vm.Actor.Tell(new StopVm(why));
        var done = await Task.WhenAny(vm.Finished.Task, Task.Delay(timeout));
        return done == vm.Finished.Task;
    }

    /// <summary>Raised when <see cref="Remove"/> forgot a VM (the fleet forgets a deleted VM's record and placement).</summary>
    public event Action<HostedVm>? Removed;

    /// <summary>Forgets an ended VM (DELETE after the stop).</summary>
    public bool Remove(HostedVm vm)
    {
        if (vm.State != VmStates.Ended) return false;
        if (_vms.TryRemove(vm.Id, out _))
        {
            Metrics.Forget(vm.Id, vm.Ended);
            Removed?.Invoke(vm);
        }
        return true;
    }

    /// <summary>At shutdown: no more VMs, every VM stopped and its end recorded.</summary>
    public async Task StopAllAsync(TimeSpan timeout)
    {
        _shuttingDown = true;
        var live = _vms.Values.Where(v => v.State != VmStates.Ended).ToList();
        if (live.Count > 0) Log.Information("Stopping {Count} VM(s)", live.Count);
        foreach (var vm in live) vm.Actor.Tell(new StopVm("host shutting down"));
        var all = Task.WhenAll(live.Select(v => v.Finished.Task));
        if (await Task.WhenAny(all, Task.Delay(timeout)) != all)
            Log.Warning("{Count} VM(s) did not end within {Timeout}", live.Count(v => v.State != VmStates.Ended), timeout);
    }

    private string NewId()
    {
        while (true)
        {
            var id = Convert.ToHexString(System.Security.Cryptography.RandomNumberGenerator.GetBytes(4)).ToLowerInvariant();
            if (!_vms.ContainsKey(id)) return id;
        }
    }
}

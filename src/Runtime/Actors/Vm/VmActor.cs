using Akka.Actor;
using Akka.Event;
using KvmActors.Runtime.Bus;
using KvmActors.Sdk;
using KvmActors.Runtime.Config;
using KvmActors.Runtime.Devices;
using KvmActors.Runtime.Kvm;
using KvmActors.Runtime.Memory;
using KvmActors.Runtime.Vcpu;

namespace KvmActors.Runtime.Vm;

/// <summary>
/// Owns one KVM virtual machine: creates it, maps its memory, loads the image, creates the device actors
/// and one pinned vCPU actor per vCPU as children, and supervises them. Ends by stopping the vCPUs
/// (kicking them out of KVM_RUN), releasing every fd and mapping, then telling the owner <see cref="VmEnded"/>.
/// </summary>
public sealed class VmActor : UntypedActor, IWithTimers
{
    private readonly GuestSpec _spec;
    private readonly IActorRef _owner;
    private readonly VmSettings _settings;
    private readonly ILoggingAdapter _log = Context.GetLogger();

    private Machine? _machine;
    private readonly Dictionary<IActorRef, int> _vcpuActors = new();
    private readonly Dictionary<int, int> _vcpuNativeThreads = new();
    private readonly Dictionary<IActorRef, string> _devices = new();
    private readonly HashSet<(AddressSpace, ulong)> _unmappedLogged = new();
    private readonly Dictionary<int, VcpuSummary> _summaries = new();

    // How the VM ends: set once, by the first end request.
    private (VmEndReason Reason, string Detail, int Status, GuestFailureInfo? Failure)? _end;
    // Every child failure, and for children stopped by policy why, so the end names the actor and its cause.
    private readonly List<ActorFailure> _failures = new();
    private readonly Dictionary<string, string> _stopCause = new();
    private readonly Dictionary<int, VcpuProgress> _progress = new();
    // A halt-policy end waiting for every device to have handled what the guest did before it halted.
    private (RequestVmEnd Request, HashSet<IActorRef> Waiting)? _haltPending;
    // Who asked for a pause, and which vCPUs have acknowledged it.
    private readonly List<IActorRef> _pauseRequesters = new();
    private readonly HashSet<int> _pausedVcpus = new();

    public ITimerScheduler Timers { get; set; } = null!;

    public VmActor(GuestSpec spec, IActorRef owner, VmSettings settings)
    {
        _spec = spec;
        _owner = owner;
        _settings = settings;
    }

    /// <summary>A VM for <paramref name="spec"/> that reports <see cref="VmEnded"/> to <paramref name="owner"/>.</summary>
    public static Props Props(GuestSpec spec, IActorRef owner, VmSettings? settings = null) =>
        Akka.Actor.Props.Create(() => new VmActor(spec, owner, settings ?? VmSettings.Default));

    protected override SupervisorStrategy SupervisorStrategy() =>
        new VmSupervisorStrategy(
            child => _vcpuActors.ContainsKey(child) ? _spec.VcpuSupervision : _spec.DeviceSupervision,
            (child, cause, restarted, outcome) =>
            {
                _failures.Add(new ActorFailure(child.Path.Name, cause.GetType().Name, cause.Message, restarted, DateTimeOffset.UtcNow));
                if (!restarted) _stopCause[child.Path.Name] = $"{outcome}; last exception {cause.GetType().Name}: {cause.Message}";
                // Escalation: the VM ends first (every vCPU out of KVM_RUN and stopped), then fails: see Finish.
                if (outcome == "escalated") _escalated ??= new VmChildFailedException(child.Path.Name, cause);
            });

    protected override void PreStart()
    {
        try
        {
            Setup();
        }
        catch (Exception e) when (e is KvmActorsException or InvalidOperationException or ArgumentException)
        {
            // Setup failures are reported, not retried: the owner learns why and every resource is released.
            EndVm(VmEndReason.Fault, e.Message, e is KvmActorsException { Kind: ErrorKind.Config } ? 2 : 1, null);
        }
    }

    /// <summary>
    /// A VM is not re-created by a restart (its guest would start over): when its supervisor restarts the
    /// VM actor (after an escalated failure), the old incarnation has already released the VM and told the
    /// owner, and the new one just stops.
    /// </summary>
    protected override void PostRestart(Exception reason)
    {
        _restarted = true;
        Context.Stop(Self);
    }

    private bool _restarted;
    private VmChildFailedException? _escalated;

    /// <summary>
    /// Every vCPU has stopped: stop, or, where a child's failure was escalated, fail now so the VM actor's
    /// own supervisor decides (no vCPU thread is in KVM_RUN any more when the VM is released).
    /// </summary>
    private void Finish()
    {
        if (_escalated is { } e) throw e;
        Context.Stop(Self);
    }

    private void Setup()
    {
        var kernel = _machine = Machine.Create(_spec.Machine, _settings.KvmDevice);
        var machine = _machine.Info;
        var registry = _settings.Registry;
        var portEntries = new List<PortBus.Entry>();
        var mmioEntries = new List<MmioBus.Entry>();
        foreach (var d in _spec.Devices)
        {
            var type = registry.Resolve(d.Type)
                       ?? throw new ConfigException(_spec.SourceFile, $"guest.devices.{d.Name}.type",
                           $"no device type '{d.Type}' (registered: {string.Join(", ", registry.Types.Keys.OrderBy(k => k))})");
            var ctx = new DeviceContext
            {
                Name = d.Name, Type = d.Type, Options = d.Options, Ports = d.Ports, Mmio = d.Mmio, Irqs = d.Irqs,
                Vm = Self, Machine = machine, Faults = _spec.DeviceFaults.GetValueOrDefault(d.Name),
                DriveIrqLine = kernel.HasIrqchip ? (line, level) => kernel.SetIrqLine(line, level) : null,
            };
            var actor = Context.ActorOf(DeviceRegistry.PropsFor(type, ctx).WithDispatcher(DeviceDispatcher.ConfigPath), $"device-{d.Name}");
            Context.Watch(actor);
            _devices[actor] = d.Name;
            portEntries.AddRange(d.Ports.Select(r => new PortBus.Entry(d.Name, r, actor)));
            mmioEntries.AddRange(d.Mmio.Select(r => new MmioBus.Entry(d.Name, r, actor)));
        }
        var ports = PortBus.Build(portEntries);
        var mmio = MmioBus.Build(mmioEntries);

        var haltType = registry.Resolve("halt-controller")
                       ?? throw new InvalidOperationException("the halt-controller device type is not loaded (kvmactors.devices.assemblies)");
        var haltCtx = new DeviceContext
        {
            Name = "halt", Type = "halt-controller", Vm = Self, Machine = machine,
            Options = new DeviceOptions(Akka.Configuration.ConfigurationFactory.ParseString($"policy = {_spec.HaltPolicy}"),
                "guest.halt-policy", _spec.SourceFile, _spec.BaseDirectory),
        };
        var halt = Context.ActorOf(DeviceRegistry.PropsFor(haltType, haltCtx).WithDispatcher(DeviceDispatcher.ConfigPath), "halt-controller");
        Context.Watch(halt);
        _devices[halt] = "halt-controller";

        foreach (var vcpu in _machine.Vcpus)
        {
            var progress = _progress[vcpu.Id] = new VcpuProgress();
            var setup = new VcpuSetup(vcpu, ports, mmio, halt, _machine.Memory, _spec.UnmappedIo, _settings.KickSignal,
                progress, _spec.VcpuFaults.GetValueOrDefault(vcpu.Id));
            var actor = Context.ActorOf(VcpuActor.Props(setup), $"vcpu-{vcpu.Id}");
            Context.Watch(actor);
            _vcpuActors[actor] = vcpu.Id;
        }
        _log.Info("VM '{0}' started: {1} vCPU(s), {2} KiB RAM, {3} device(s)", _spec.Name, _spec.Machine.VcpuCount, machine.RamSize / 1024, _spec.Devices.Count);
    }

    protected override void OnReceive(object message)
    {
        switch (message)
        {
            case VcpuStarted s:
                _vcpuNativeThreads[s.VcpuId] = s.NativeThreadId;
                if (_end is not null) Kick(s.VcpuId);
                break;
            case RequestVmEnd { Reason: VmEndReason.Halted } r when _end is null && _haltPending is null:
                // A device may still hold an end request of its own that the guest caused before it halted
                // (a debug-exit OUT then HLT): ask every device for its identity first. A device answers only
                // after the messages already in its mailbox, so any such request reaches us before its answer.
                _haltPending = (r, _devices.Keys.ToHashSet());
                foreach (var d in _devices.Keys) d.Tell(new Identify("halt-flush"));
                Timers.StartSingleTimer("halt-flush", HaltFlushTimedOut.Instance, _settings.StopTimeout);
                break;
            case ActorIdentity { MessageId: "halt-flush" } id:
                if (_haltPending is { } pending && id.Subject is not null && pending.Waiting.Remove(id.Subject) && pending.Waiting.Count == 0)
                    EndPendingHalt();
                break;
            case HaltFlushTimedOut:
                EndPendingHalt();
                break;
            case RequestVmEnd r:
                EndVm(r.Reason, r.Detail, r.ExitStatus, null);
                break;
            case ChildConfigError c:
                EndVm(VmEndReason.Fault, $"{c.Actor}: {c.Error.Message}", 2, null);
                break;
            case StopVm s:
                EndVm(VmEndReason.StoppedOnRequest, s.Why, 0, null);
                break;
            case VcpuGuestFailed f:
                _log.Error("guest failure on vcpu {0}: {1}: {2}", f.Failure.VcpuId, f.Failure.ExitReason, f.Failure.Explanation);
                EndVm(VmEndReason.GuestFailure, $"{f.Failure.ExitReason} on vcpu {f.Failure.VcpuId}: {f.Failure.Explanation}", 1, f.Failure);
                break;
            case UnmappedAccess u:
                if (_unmappedLogged.Add((u.Space, u.Address)))
                    _log.Warning("vcpu {0}: {1} of unmapped {2} 0x{3:x} ({4} bytes): {5}", u.VcpuId, u.IsWrite ? "write" : "read",
                        u.Space == AddressSpace.Port ? "port" : "MMIO address", u.Address, u.Size,
                        u.IsWrite ? "dropped" : "reads all ones");
                break;
            case SetIrqLine irq:
                bool driven;
                try { driven = _machine?.SetIrqLine(irq.Line, irq.Level) == true; }
                catch (KvmException e)
                {
                    // A line KVM refuses (e.g. out of the irqchip's range) is the device's config problem,
                    // not a reason to fail (and so restart) the VM actor itself.
                    EndVm(VmEndReason.Fault, $"device '{irq.DeviceName}' drove IRQ {irq.Line}: {e.Message}", 1, null);
                    break;
                }
                if (!driven)
                    _log.Debug("device {0} set IRQ {1} {2} (no irqchip: no-op)", irq.DeviceName, irq.Line, irq.Level ? "high" : "low");
                break;
            case VcpuStopped stopped:
                _summaries[stopped.Summary.VcpuId] = stopped.Summary;
                _vcpuNativeThreads.Remove(stopped.Summary.VcpuId);
                break;
            case Terminated t:
                OnChildTerminated(t.ActorRef);
                break;
            case PauseVm:
                Pause();
                break;
            case VcpuPaused p:
                _pausedVcpus.Add(p.VcpuId);
                AnswerPauseIfComplete();
                break;
            case ResumeVm:
                _pausedVcpus.Clear();
                Timers.Cancel("pause-kick");
                foreach (var actor in _vcpuActors.Keys) actor.Tell(new ResumeVcpu());
                Sender.Tell(new VmResumed(_spec.Name));
                break;
            case PauseKick:
                foreach (var (actor, id) in _vcpuActors)
                    if (!_pausedVcpus.Contains(id)) Kick(id);
                break;
            case KickAgain:
                foreach (var id in _vcpuNativeThreads.Keys) Kick(id);
                break;
            case StopTimedOut:
                _log.Warning("VM '{0}': vCPUs {1} did not acknowledge the stop in {2}; stopping the VM actor (the VM is released once they leave KVM_RUN)",
                    _spec.Name, string.Join(",", _vcpuNativeThreads.Keys), _settings.StopTimeout);
                Context.Stop(Self);
                break;
            default:
                Unhandled(message);
                break;
        }
    }

    private void OnChildTerminated(IActorRef child)
    {
        if (_vcpuActors.Remove(child, out var vcpuId))
        {
            _vcpuNativeThreads.Remove(vcpuId);
            if (_end is null)
                EndVm(VmEndReason.Fault, $"vcpu-{vcpuId} stopped: {Cause(child)}", 1, null);
        }
        else if (_devices.Remove(child, out var name))
        {
            if (_end is null)
                EndVm(VmEndReason.Fault, $"device '{name}' stopped: {Cause(child)}", 1, null);
        }
        if (_end is not null && _vcpuActors.Count == 0)
            Finish();
    }

    private string Cause(IActorRef child) =>
        _stopCause.TryGetValue(child.Path.Name, out var why) ? why : "stopped without a failure";

    private void EndPendingHalt()
    {
        Timers.Cancel("halt-flush");
        if (_haltPending is { } pending) EndVm(pending.Request.Reason, pending.Request.Detail, pending.Request.ExitStatus, null);
        _haltPending = null;
    }

    private void Pause()
    {
        _pauseRequesters.Add(Sender);
        if (_end is not null)
        {
            // Ending: no vCPU runs the guest any more.
            AnswerPause();
            return;
        }
        foreach (var (actor, id) in _vcpuActors)
        {
            actor.Tell(new PauseVcpu());
            Kick(id);
        }
        // Like a stop, a pause re-kicks until every vCPU has acknowledged.
        Timers.StartPeriodicTimer("pause-kick", PauseKick.Instance, _settings.KickInterval);
        AnswerPauseIfComplete();
    }

    private void AnswerPauseIfComplete()
    {
        if (_pauseRequesters.Count == 0 || _vcpuActors.Values.Any(id => !_pausedVcpus.Contains(id))) return;
        AnswerPause();
    }

    private void AnswerPause()
    {
        Timers.Cancel("pause-kick");
        foreach (var r in _pauseRequesters) r.Tell(new VmPaused(_spec.Name));
        _pauseRequesters.Clear();
    }

    private void EndVm(VmEndReason reason, string detail, int status, GuestFailureInfo? failure)
    {
        if (_end is not null) return;
        _end = (reason, detail, status, failure);
        _log.Info("VM '{0}' ending: {1} ({2})", _spec.Name, reason, detail);
        if (_vcpuActors.Count == 0)
        {
            Finish();
            return;
        }
        foreach (var (actor, id) in _vcpuActors)
        {
            actor.Tell(new StopVcpu(detail));
            Kick(id);
        }
        // A kick can race a vCPU entering KVM_RUN; repeat until every vCPU has acknowledged.
        Timers.StartPeriodicTimer("kick", KickAgain.Instance, _settings.KickInterval);
        Timers.StartSingleTimer("stop-timeout", StopTimedOut.Instance, _settings.StopTimeout);
    }

    private void Kick(int vcpuId)
    {
        var vcpu = _machine?.Vcpus.FirstOrDefault(v => v.Id == vcpuId);
        if (vcpu is null) return;
        VcpuKick.Kick(vcpu, _vcpuNativeThreads.GetValueOrDefault(vcpuId), _settings.KickSignal);
    }

    protected override void PostStop()
    {
        // Children are stopped by now; release the kernel objects in reverse order of creation.
        _machine?.Dispose();
        if (_restarted) return; // the incarnation before this one released the VM and told the owner
        var end = _end ?? (VmEndReason.Fault, "the VM actor stopped unexpectedly", 1, null);
        var summaries = _summaries.Values.OrderBy(s => s.VcpuId).ToList();
        _owner.Tell(new VmEnded(_spec.Name, end.Reason, end.Detail, end.Status, end.Failure, summaries, _failures.ToList()));
    }

    private sealed class KickAgain { public static readonly KickAgain Instance = new(); }
    private sealed class PauseKick { public static readonly PauseKick Instance = new(); }
    private sealed class HaltFlushTimedOut { public static readonly HaltFlushTimedOut Instance = new(); }
    private sealed class StopTimedOut { public static readonly StopTimedOut Instance = new(); }
}

/// <summary>
/// Supervision of the VM's children by kind (vCPU or device), as <c>guest.supervision</c> says: restart
/// within a budget of restarts per time window, stop the VM, or escalate. Every failure is recorded so
/// the end report names the actor and its exception.
/// </summary>
internal sealed class VmSupervisorStrategy(
    Func<IActorRef, SupervisionPolicy> policyFor,
    Action<IActorRef, Exception, bool, string> record)
    : OneForOneStrategy(_ => Directive.Restart, true)
{
    public override void ProcessFailure(IActorContext context, bool restart, IActorRef child, Exception cause,
        Akka.Actor.Internal.ChildRestartStats stats, IReadOnlyCollection<Akka.Actor.Internal.ChildRestartStats> children)
    {
        if (ConfigError(cause) is { } configError)
        {
            // A device whose options are wrong fails the same way at every restart: end the VM as a config error.
            record(child, configError, false, "config error");
            context.Stop(child);
            context.Self.Tell(new ChildConfigError(child.Path.Name, configError));
            return;
        }
        var policy = policyFor(child);
        switch (policy.Directive)
        {
            case SupervisionDirective.Restart when stats.RequestRestartPermission(policy.MaxRestarts, (int)policy.Within.TotalMilliseconds):
                record(child, cause, true, "restarted");
                RestartChild(child, cause, suspendFirst: false);
                break;
            case SupervisionDirective.Restart:
                record(child, cause, false, $"exceeded {policy.MaxRestarts} restart(s) within {policy.Within.TotalSeconds:0.###}s");
                context.Stop(child);
                break;
            case SupervisionDirective.Escalate:
                record(child, cause, false, "escalated");
                context.Stop(child);
                break;
            default:
                record(child, cause, false, "directive stop-vm");
                context.Stop(child);
                break;
        }
    }

    /// <summary>The config error behind a failure, looking through the wrappers actor creation adds.</summary>
    private static ConfigException? ConfigError(Exception? e)
    {
        for (; e is not null; e = e.InnerException)
            if (e is ConfigException c) return c;
        return null;
    }
}

/// <summary>A child failed at creation because of its configuration.</summary>
internal sealed record ChildConfigError(string Actor, ConfigException Error);

/// <summary>The VM actor fails with this when a child's failure is escalated.</summary>
public sealed class VmChildFailedException(string actor, Exception cause)
    : Exception($"{actor} failed: {cause.Message}", cause);

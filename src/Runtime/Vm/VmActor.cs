using Akka.Actor;
using Akka.Event;
using KvmActors.Runtime.Bus;
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
    // The last failure the supervisor saw, per child, so an actor stopped by policy can be named with its cause.
    private readonly Dictionary<string, Exception> _lastFailure = new();

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
        new RecordingStopStrategy((child, cause) => _lastFailure[child.Path.Name] = cause);

    protected override void PreStart()
    {
        try
        {
            Setup();
        }
        catch (Exception e) when (e is KvmException or GuestMemoryException or ConfigException or BusOverlapException or InvalidOperationException or ArgumentException)
        {
            // Setup failures are reported, not retried: the owner learns why and every resource is released.
            EndVm(VmEndReason.Fault, e.Message, e is ConfigException or BusOverlapException ? 2 : 1, null);
        }
    }

    private void Setup()
    {
        _machine = Machine.Create(_spec, _settings.KvmDevice);
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
                Vm = Self, Machine = machine,
            };
            var actor = Context.ActorOf(DeviceRegistry.PropsFor(type, ctx), $"device-{d.Name}");
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
        var halt = Context.ActorOf(DeviceRegistry.PropsFor(haltType, haltCtx), "halt-controller");
        Context.Watch(halt);
        _devices[halt] = "halt-controller";

        foreach (var vcpu in _machine.Vcpus)
        {
            var setup = new VcpuSetup(vcpu, ports, mmio, halt, _machine.Memory, _spec.UnmappedIo, _settings.KickSignal);
            var actor = Context.ActorOf(VcpuActor.Props(setup), $"vcpu-{vcpu.Id}");
            Context.Watch(actor);
            _vcpuActors[actor] = vcpu.Id;
        }
        _log.Info("VM '{0}' started: {1} vCPU(s), {2} KiB RAM, {3} device(s)", _spec.Name, _spec.VcpuCount, machine.RamSize / 1024, _spec.Devices.Count);
    }

    protected override void OnReceive(object message)
    {
        switch (message)
        {
            case VcpuStarted s:
                _vcpuNativeThreads[s.VcpuId] = s.NativeThreadId;
                if (_end is not null) Kick(s.VcpuId);
                break;
            case RequestVmEnd r:
                EndVm(r.Reason, r.Detail, r.ExitStatus, null);
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
                if (_machine?.SetIrqLine(irq.Line, irq.Level) != true)
                    _log.Debug("device {0} set IRQ {1} {2} (no irqchip: no-op)", irq.DeviceName, irq.Line, irq.Level ? "high" : "low");
                break;
            case VcpuStopped stopped:
                _summaries[stopped.Summary.VcpuId] = stopped.Summary;
                _vcpuNativeThreads.Remove(stopped.Summary.VcpuId);
                break;
            case Terminated t:
                OnChildTerminated(t.ActorRef);
                break;
            case KickAgain:
                foreach (var id in _vcpuNativeThreads.Keys) Kick(id);
                break;
            case StopTimedOut:
                _log.Warning("VM '{0}': vCPUs {1} did not acknowledge the stop in {2}; releasing the VM anyway",
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
            Context.Stop(Self);
    }

    private string Cause(IActorRef child) =>
        _lastFailure.TryGetValue(child.Path.Name, out var e) ? $"{e.GetType().Name}: {e.Message}" : "stopped without a failure";

    private void EndVm(VmEndReason reason, string detail, int status, GuestFailureInfo? failure)
    {
        if (_end is not null) return;
        _end = (reason, detail, status, failure);
        _log.Info("VM '{0}' ending: {1} ({2})", _spec.Name, reason, detail);
        if (_vcpuActors.Count == 0)
        {
            Context.Stop(Self);
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
        var end = _end ?? (VmEndReason.Fault, "the VM actor stopped unexpectedly", 1, null);
        var summaries = _summaries.Values.OrderBy(s => s.VcpuId).ToList();
        _owner.Tell(new VmEnded(_spec.Name, end.Reason, end.Detail, end.Status, end.Failure, summaries));
    }

    private sealed class KickAgain { public static readonly KickAgain Instance = new(); }
    private sealed class StopTimedOut { public static readonly StopTimedOut Instance = new(); }
}

/// <summary>
/// A failed child of the VM is stopped and its cause recorded, so the Terminated that follows ends the VM
/// with a reason naming the actor and its exception.
/// </summary>
internal sealed class RecordingStopStrategy(Action<IActorRef, Exception> record)
    : OneForOneStrategy(_ => Directive.Stop, true)
{
    public override void ProcessFailure(IActorContext context, bool restart, IActorRef child, Exception cause,
        Akka.Actor.Internal.ChildRestartStats stats, IReadOnlyCollection<Akka.Actor.Internal.ChildRestartStats> children)
    {
        record(child, cause);
        base.ProcessFailure(context, restart, child, cause, stats, children);
    }
}

/// <summary>Runtime settings for VMs, bound from the <c>kvmactors</c> block.</summary>
public sealed record VmSettings(string KvmDevice, TimeSpan StopTimeout, TimeSpan KickInterval, int KickSignal, DeviceRegistry Registry)
{
    private static readonly Lazy<VmSettings> Defaults = new(() => From(KvmActorsConfig.Reference));
    public static VmSettings Default => Defaults.Value;

    public static VmSettings From(Akka.Configuration.Config config)
    {
        var c = config.WithFallback(KvmActorsConfig.Reference).GetConfig("kvmactors");
        var registry = new DeviceRegistry(c.GetStringList("devices.assemblies"), c.GetStringList("devices.plugin-directories"));
        return new VmSettings(c.GetString("kvm-device"), c.GetTimeSpan("vm.stop-timeout"), c.GetTimeSpan("vm.kick-interval"),
            c.GetInt("vm.kick-signal"), registry);
    }
}

using Akka.Actor;
using Akka.Event;
using KvmActors.Runtime.Bus;
using KvmActors.Runtime.Devices;
using KvmActors.Runtime.Vcpu;
using KvmActors.Sdk;

namespace KvmActors.Runtime.Vm;

// Set-up, in stages so the mailbox is served in between (a StopVm during set-up is honoured at once):
// 1. PreStart: the machine (KVM VM, memory, image, vCPU fds), the device actors and the buses;
// 2. the vCPU actors, VcpuBatch at a time, each batch one self-message, created held (paused before their
//    first KVM_RUN), in parallel with the devices' start;
// 3. once every vCPU actor exists and every device has started (its constructor and PreStart ran: an Identify
//    answered) the vCPUs are let go, so a bad device option ends the VM before the guest ran a single instruction,
//    and no guest code competes for the CPU with the set-up: a thread start waits for the new thread to be
//    scheduled, and with the first vCPUs already spinning on every core a batch of 16 took 0.3-2.2 s (254 vCPUs,
//    2 cores), with a stop waiting behind it.
public sealed partial class VmActor
{
    /// <summary>vCPU actors created per <see cref="CreateVcpus"/> message (each is a pinned thread).</summary>
    private const int VcpuBatch = 16;
    private const string DeviceStartedId = "device-started";

    private Machine? _machine;
    private PortBus? _ports;
    private MmioBus? _mmio;
    private readonly HashSet<IActorRef> _devicesStarting = new();
    private readonly Dictionary<IActorRef, int> _vcpuActors = new();
    private readonly Dictionary<int, int> _vcpuNativeThreads = new();
    // Each vCPU thread's end and native id, waited for before the VM is released (see PostStop).
    private readonly Dictionary<int, (Task Exited, int NativeThreadId)> _vcpuThreadExits = new();
    private readonly Dictionary<IActorRef, string> _devices = new();
    private readonly Dictionary<int, VcpuProgress> _progress = new();

    protected override void PreStart()
    {
        try
        {
            Setup();
        }
        catch (Exception e)
        {
            // Set-up failures are reported, not retried (a restart would only fail again): the owner learns why,
            // every resource is released. Any exception: an unexpected one must end the VM too, never hang it.
            var status = e is KvmActorsException { Kind: ErrorKind.Config } ? 2 : 1;
            EndVm(VmEndReason.Fault, e is KvmActorsException ? e.Message : $"{e.GetType().Name}: {e.Message}", status, null);
        }
    }

    private void Setup()
    {
        CreateTrace.Mark(Self.Path.Name, "vm-thread");
        _restore?.CheckMatches(_spec);
        var kernel = _machine = _prebuilt ?? (_restore is null
            ? Machine.Create(_spec.Machine, _settings.KvmDevice)
            : Machine.Restore(_spec.Machine, _settings.KvmDevice, _restore.ForMachine()));
        if (kernel.RefusedMsrs.Count > 0)
            _log.Warning("VM '{0}': this host's KVM refused saved MSR(s) {1}; the guest runs on without them", _spec.Name,
                string.Join(", ", kernel.RefusedMsrs.Select(m => $"0x{m:x}")));
        CreateTrace.Mark(Self.Path.Name, "kvm-vm");
        _haltPolicy = HaltPolicy.For(_spec.HaltPolicy, _spec.Machine.VcpuCount, _spec.SourceFile);
        var machine = _machine.Info;
        var registry = _settings.Registry;
        var types = _spec.Devices.Select(d => (Spec: d, Type: registry.Resolve(d.Type)
            ?? throw new ConfigException(_spec.SourceFile, $"guest.devices.{d.Name}.type",
                $"no device type '{d.Type}' (registered: {string.Join(", ", registry.Types.Keys.OrderBy(k => k))})"))).ToList();
        var pciBus = LayOutPci(types);
        var platform = _platform = VmPlatform.For(kernel);
        foreach (var (d, type) in types)
        {
            var pci = pciBus.FirstOrDefault(f => f.DeviceName == d.Name);
            var ctx = new DeviceContext
            {
                Name = d.Name, Type = d.Type, Options = d.Options, Ports = d.Ports, Mmio = d.Mmio, Irqs = d.Irqs,
                Vm = Self, Machine = machine, Faults = _spec.DeviceFaults.GetValueOrDefault(d.Name),
                // Every device's lines go through the platform: KVM's irqchip, or the userspace IOAPIC when split.
                DriveIrqLine = kernel.HasIrqchip ? (line, level) => platform.SetLine(line, level) : null,
                Pci = pci, PciBus = pciBus, Platform = platform,
            };
            var actor = Context.ActorOf(DeviceRegistry.PropsFor(type, ctx).WithDispatcher(DeviceDispatcher.ConfigPath), $"device-{d.Name}");
            Context.Watch(actor);
            _devices[actor] = d.Name;
            _deviceByName[d.Name] = actor;
            // Before its Identify below, so the device has its saved state before any access can reach it.
            if (_restore?.State.Devices.FirstOrDefault(s => s.Name == d.Name)?.State is { } saved)
                actor.Tell(new RestoreDeviceState(saved));
            var waitForWrites = type.GetCustomAttributes(typeof(DeviceTypeAttribute), false) is [DeviceTypeAttribute { WaitForWrites: true }];
            _fixedPorts.AddRange(d.Ports.Select(r => new PortBus.Entry(d.Name, r, actor, waitForWrites)));
            _fixedMmio.AddRange(d.Mmio.Select(r => new MmioBus.Entry(d.Name, r, actor)));
            if (pci is not null) _barRoutes[d.Name] = PciBarsOf(pci);
        }
        RebuildBuses();

        // A device answers Identify only once it has been created and started; one that fails instead is
        // stopped by the supervisor strategy, which ends the VM (ChildStartFailed or Terminated).
        foreach (var device in _devices.Keys)
        {
            _devicesStarting.Add(device);
            device.Tell(new Identify(DeviceStartedId));
        }
        _log.Info("VM '{0}' {1}: {2} vCPU(s), {3} KiB RAM, {4} device(s)", _spec.Name, _restore is null ? "created" : "restored", _spec.Machine.VcpuCount, machine.RamSize / 1024, _spec.Devices.Count);
        StartDebugger();
        CreateTrace.Mark(Self.Path.Name, "devices-created");
        Self.Tell(new CreateVcpus(0));
    }

    private bool DevicesStarted => _devicesStarting.Count == 0;
    private bool _vcpusCreated;
    private readonly List<IActorRef> _startWaiters = new();

    private void AnswerStartedIfReady(IActorRef? asking = null)
    {
        if (asking is not null) _startWaiters.Add(asking);
        if (_end is not null || !DevicesStarted || _vcpuActors.Count < _spec.Machine.VcpuCount) return;
        foreach (var w in _startWaiters) w.Tell(new VmStarted(_spec.Name));
        _startWaiters.Clear();
    }

    private void DeviceStarted(IActorRef? device)
    {
        if (device is null || !_devicesStarting.Remove(device) || !DevicesStarted || _end is not null) return;
        CreateTrace.Mark(Self.Path.Name, "devices-started");
        AnswerStartedIfReady();
        LetVcpusGo();
    }

    private void LetVcpusGo()
    {
        if (!DevicesStarted || !_vcpusCreated || _end is not null) return;
        if (StartsPaused) return; // guest.gdb.wait: gdb's first continue lets them go
        CreateTrace.Mark(Self.Path.Name, "vcpus-let-go");
        foreach (var actor in _vcpuActors.Keys) actor.Tell(new ResumeVcpu()); // the held vCPUs enter the guest
    }

    private void CreateVcpuBatch(int from)
    {
        if (_end is not null || _machine is null) return; // ending: no more vCPUs
        var vcpus = _machine.Vcpus;
        var to = Math.Min(vcpus.Count, from + VcpuBatch);
        for (var i = from; i < to; i++)
        {
            var vcpu = vcpus[i];
            var progress = _progress[vcpu.Id] = new VcpuProgress { Paused = true }; // held: see LetVcpusGo
            if (_restore?.State.Vcpus[vcpu.Id].Halted == true)
            {
                // Halted (no irqchip) when the snapshot was taken: parked again, and counted by the halt policy.
                progress.Parked = progress.Halted = true;
                Self.Tell(new VcpuHalted(vcpu.Id));
            }
            var setup = new VcpuSetup(vcpu, vcpus.Count, _ports!, _mmio!, _machine.Memory, _spec.UnmappedIo, _settings,
                progress, _spec.VcpuFaults.GetValueOrDefault(vcpu.Id),
                _machine.SplitIrqchip && _platform is { } platform ? platform.EndOfInterrupt : null);
            var actor = Context.ActorOf(VcpuActor.Props(setup), $"vcpu-{vcpu.Id}");
            Context.Watch(actor);
            _vcpuActors[actor] = vcpu.Id;
        }
        if (to < vcpus.Count) Self.Tell(new CreateVcpus(to));
        else
        {
            _vcpusCreated = true;
            CreateTrace.Mark(Self.Path.Name, "vcpus-created");
            _log.Info("VM '{0}' started: {1} vCPU(s) running", _spec.Name, vcpus.Count);
            AnswerStartedIfReady();
            LetVcpusGo();
        }
    }

    /// <summary>Self-message: create the vCPU actors from index <paramref name="From"/> on (one batch).</summary>
    private sealed record CreateVcpus(int From);
}

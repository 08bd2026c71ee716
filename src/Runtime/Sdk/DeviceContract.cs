using Akka.Actor;
using Akka.Event;

namespace KvmActors.Sdk;

/// <summary>
/// Marks a device actor class and gives it the short type name used in config (<c>type = uart-16550</c>).
/// The class must derive from <see cref="DeviceActor"/> (or be an actor with a constructor taking a
/// <see cref="DeviceContext"/>).
/// </summary>
[AttributeUsage(AttributeTargets.Class, Inherited = false)]
public sealed class DeviceTypeAttribute(string name) : Attribute
{
    public string Name { get; } = name;

    /// <summary>
    /// The vCPU waits until each OUT to this device was handled before it runs the guest on, as on a real bus (for a
    /// write that stops the machine, e.g. ACPI sleep, or moves another device's range, a PCI BAR); other devices' writes
    /// are posted. Costs a round trip per OUT item.
    /// </summary>
    public bool WaitForWrites { get; init; }
}

/// <summary>A waited-for write whose completion the device holds back (<see cref="DeviceActor.DeferWriteCompletion"/>).</summary>
public sealed record PendingWrite(IActorRef Vcpu, long Seq);


/// <summary>
/// Everything a device gets from the runtime when it is created: its name, its ranges and IRQ lines,
/// its options (the <c>options</c> block of its config entry), the VM actor and the machine's shape.
/// </summary>
public sealed class DeviceContext
{
    public required string Name { get; init; }
    public required string Type { get; init; }
    public required DeviceOptions Options { get; init; }
    public IReadOnlyList<PortRange> Ports { get; init; } = [];
    public IReadOnlyList<MmioRange> Mmio { get; init; } = [];
    public IReadOnlyList<int> Irqs { get; init; } = [];
    public required IActorRef Vm { get; init; }
    public required MachineInfo Machine { get; init; }
    /// <summary>Faults to inject into this device (null: none, and no cost).</summary>
    public DeviceFaults? Faults { get; init; }
    /// <summary>
    /// Drives an IRQ line at once, on the calling thread (KVM_IRQ_LINE on the VM fd, which is thread-safe); null
    /// without an in-kernel irqchip. Test kernels check an interrupt arrived one instruction after the OUT that
    /// raised it, so the line cannot wait for the VM actor's mailbox.
    /// </summary>
    public Action<int, bool>? DriveIrqLine { get; init; }

    /// <summary>
    /// The VM's platform: IRQ lines, MSIs and DMA through the interrupt controller and IOMMU the VM has (see
    /// <see cref="DevicePlatform"/>); null only for a device made outside a VM (tests of a bare actor).
    /// </summary>
    public DevicePlatform? Platform { get; init; }

    /// <summary>This device's PCI function when its class is a PCI device (<see cref="IPciDevice"/>), else null.</summary>
    public PciFunction? Pci { get; init; }
    /// <summary>Every PCI function of bus 0 (for a host bridge); empty without PCI devices.</summary>
    public IReadOnlyList<PciFunction> PciBus { get; init; } = [];

    /// <summary>
    /// What outlives one incarnation of the device actor: the same context object is handed to every
    /// incarnation (it is captured by the Props), so this is how a restarted device finds its kept state
    /// and the access that was being handled when it failed. Only that device's actor touches it.
    /// </summary>
    internal IncarnationCarry Carry { get; } = new();

    internal sealed class IncarnationCarry
    {
        public object? KeptState;
        public (object Message, IActorRef Sender)? Replay;
        public long Accesses;
        public IReadOnlyList<PciBarMapping>? PciBars;
    }
}

/// <summary>
/// Base class for device actors: turns port and MMIO messages into <see cref="OnRead"/> and
/// <see cref="OnWrite"/> calls and answers reads. A device declares its ranges in config; the runtime
/// routes accesses to it. Override <see cref="OnMessage"/> for messages of its own (host input, timers), and
/// <see cref="SaveState"/>/<see cref="RestoreState"/> for a device whose state a VM snapshot must carry.
/// </summary>
public abstract class DeviceActor : UntypedActor
{
    protected DeviceContext Device { get; }
    protected ILoggingAdapter Log { get; } = Context.GetLogger();

    protected DeviceActor(DeviceContext context) => Device = context;

    /// <summary>Answer a guest read. The default is what an empty bus gives: all ones.</summary>
    protected virtual ulong OnRead(DeviceAccess access) => access.AllOnes;

    /// <summary>Take a guest write. The default drops it.</summary>
    protected virtual void OnWrite(DeviceAccess access, ulong value) { }

    /// <summary>Any other message; the default marks it unhandled.</summary>
    protected virtual void OnMessage(object message) => Unhandled(message);

    /// <summary>
    /// The device's guest-visible state for a VM snapshot, as a versioned record of its own
    /// (<see cref="DeviceState.Of{T}"/>), or null (the default): the device declares no state and a restored VM
    /// gets it fresh. A device that overrides this must override <see cref="RestoreState"/>.
    /// </summary>
    protected virtual DeviceState? SaveState() => null;

    /// <summary>
    /// Takes a state <see cref="SaveState"/> made (its <see cref="DeviceState.Type"/> is this device's type,
    /// checked before the call). Called right after the device is created, before any access. Check the version
    /// (<see cref="DeviceState.ExpectVersion"/>) and every value, and throw <see cref="DeviceStateException"/>
    /// naming what is wrong: the VM then ends with that error instead of running on a state that cannot be.
    /// Restore into the object <see cref="Kept{T}"/> hands out, so a later restart keeps the restored state.
    /// </summary>
    protected virtual void RestoreState(DeviceState state) { }

    /// <summary>
    /// Whether the device's guest-visible state survives a restart of its actor (see <see cref="Kept{T}"/>).
    /// Either way the access being handled when it failed is handled again by the new incarnation, first,
    /// and messages sent meanwhile wait in the mailbox: routing never has a gap.
    /// </summary>
    protected virtual bool KeepsStateOnRestart => false;

    /// <summary>True while the actor is being restarted (in PostStop), so a device keeping its state does not close it.</summary>
    protected bool Restarting { get; private set; }

    /// <summary>
    /// The device's state object: created on first use and, when <see cref="KeepsStateOnRestart"/>,
    /// handed to the next incarnation after a restart instead of being created again.
    /// </summary>
    protected T Kept<T>(Func<T> create) where T : class
    {
        if (Device.Carry.KeptState is T kept) return kept;
        var fresh = create();
        Device.Carry.KeptState = fresh;
        return fresh;
    }

    protected sealed override void OnReceive(object message) => Dispatch(message, Sender, replay: false);

    private void Dispatch(object message, IActorRef sender, bool replay)
    {
        if (message is PortWrite or PortRead or MmioWrite or MmioRead && Device.Faults is { } faults && !replay)
        {
            var n = ++Device.Carry.Accesses;
            if (faults.Fires(n))
                throw new InjectedFaultException($"injected fault: device '{Device.Name}' failed on access {n}");
        }
        // After each message the read snapshot is brought up to date: before a read is answered and before a
        // write is counted as handled, so a vCPU that sees either also sees the registers that followed it.
        ulong value;
        switch (message)
        {
            case PortWrite w:
                _waitedWrite = w.Seq != 0 ? new PendingWrite(sender, w.Seq) : null;
                OnWrite(new DeviceAccess(AddressSpace.Port, w.Port, w.Offset, w.Size, w.VcpuId), w.Value);
                PublishReadSnapshot();
                _readPath.WriteHandled(w.VcpuId);
                if (_waitedWrite is { } done) CompleteWrite(done);
                _waitedWrite = null;
                break;
            case PortRead r:
                value = OnRead(new DeviceAccess(AddressSpace.Port, r.Port, r.Offset, r.Size, r.VcpuId)) & Mask(r.Size);
                PublishReadSnapshot();
                Reply(sender, new ReadCompleted(r.Seq, value));
                break;
            case MmioWrite w:
                OnWrite(new DeviceAccess(AddressSpace.Mmio, w.Address, w.Offset, w.Size, w.VcpuId), w.Value);
                PublishReadSnapshot();
                _readPath.WriteHandled(w.VcpuId);
                break;
            case MmioRead r:
                value = OnRead(new DeviceAccess(AddressSpace.Mmio, r.Address, r.Offset, r.Size, r.VcpuId)) & Mask(r.Size);
                PublishReadSnapshot();
                Reply(sender, new ReadCompleted(r.Seq, value));
                break;
            case SaveDeviceState:
                sender.Tell(new DeviceStateSaved(Device.Name, SaveState()), Self);
                break;
            case RestoreDeviceState restore:
                var error = Restore(restore.State);
                PublishReadSnapshot();
                sender.Tell(new DeviceStateRestored(Device.Name, error), Self);
                break;
            default:
                OnMessage(message);
                PublishReadSnapshot();
                break;
        }
    }

    // A state file is input, not a bug of the device: whatever RestoreState throws is the answer, not a crash.
    private string? Restore(DeviceState state)
    {
        if (state.Type != Device.Type)
            return $"the saved state is of a '{state.Type}' device; '{Device.Name}' is a '{Device.Type}'";
        try
        {
            RestoreState(state);
            return null;
        }
        catch (Exception e)
        {
            return e is KvmActorsException ? e.Message : $"{e.GetType().Name}: {e.Message}";
        }
    }

    // ---- read snapshot: see DeviceReadPath for why this shared state exists and when a vCPU may use it ----

    private DeviceReadPath? _readPathOfSelf;
    private DeviceReadPath _readPath => _readPathOfSelf ??= DeviceReadPath.Of(Self, Device.Machine.VcpuCount);

    /// <summary>
    /// How many port offsets (from the start of the matched range, at most 64) <see cref="CaptureReadSnapshot"/>
    /// describes. 0, the default: the device publishes no read snapshot and every IN is a round trip.
    /// </summary>
    protected virtual int ReadSnapshotOffsets => 0;

    /// <summary>The access widths the snapshot may answer: bit n set for n-byte accesses (default: byte accesses).</summary>
    protected virtual int ReadSnapshotSizes => 1 << 1;

    /// <summary>
    /// Called after every message: fill <c>values[offset]</c> for each port offset whose read, right now, returns
    /// that value and changes nothing (no FIFO pop, no clear-on-read bit set, no other effect), and return the
    /// mask of those offsets. Leave out every register whose read would have an effect: vCPUs then ask.
    /// </summary>
    protected virtual ulong CaptureReadSnapshot(Span<ulong> values) => 0;

    private void PublishReadSnapshot()
    {
        var n = ReadSnapshotOffsets;
        if (n <= 0) return;
        Span<ulong> values = stackalloc ulong[Math.Min(n, 64)];
        var valid = CaptureReadSnapshot(values);
        var sizes = ReadSnapshotSizes;
        var current = _readPath.Snapshot;
        if (current is not null && current.SameAs(valid, values, sizes)) return; // unchanged: no allocation
        _readPath.Publish(new ReadSnapshot(valid, values, sizes));
    }

    public override void AroundPostStop()
    {
        _readPath.Invalidate(); // a stopped device answers nothing from its snapshot
        base.AroundPostStop();
    }

    private void Reply(IActorRef to, ReadCompleted reply)
    {
        if (Device.Faults is { ReplyDelay: var delay } && delay > TimeSpan.Zero)
            Context.System.Scheduler.ScheduleTellOnce(delay, to, reply, Self);
        else
            to.Tell(reply, Self);
    }

    protected override void PreRestart(Exception reason, object message)
    {
        Restarting = true;
        _readPath.Invalidate(); // the state may be half-updated: round trips until the next incarnation publishes
        if (message is PortWrite or PortRead or MmioWrite or MmioRead)
            Device.Carry.Replay = (message, Sender);
        if (!KeepsStateOnRestart) Device.Carry.KeptState = null;
        base.PreRestart(reason, message);
    }

    protected override void PostRestart(Exception reason)
    {
        base.PostRestart(reason);
        if (Device.Carry.Replay is { } replay)
        {
            Device.Carry.Replay = null;
            Dispatch(replay.Message, replay.Sender, replay: true);
        }
    }

    private static ulong Mask(int size) => size >= 8 ? ulong.MaxValue : (1UL << (size * 8)) - 1;

    private PendingWrite? _waitedWrite;

    /// <summary>
    /// From <see cref="OnWrite"/> of a waited-for write (<see cref="DeviceTypeAttribute.WaitForWrites"/>): the vCPU
    /// stays in the write until <see cref="CompleteWrite"/> (null for a posted write, which nobody waits for).
    /// </summary>
    protected PendingWrite? DeferWriteCompletion()
    {
        var w = _waitedWrite;
        _waitedWrite = null;
        return w;
    }

    /// <summary>Let the vCPU go on after a write whose completion was deferred.</summary>
    protected void CompleteWrite(PendingWrite write) => Reply(write.Vcpu, new ReadCompleted(write.Seq, 0));

    /// <summary>Drive one of this device's IRQ lines (routed to KVM's irqchip when the VM has one).</summary>
    protected void SetIrq(int line, bool level)
    {
        if (Device.DriveIrqLine is { } drive) drive(line, level);
        else Device.Vm.Tell(new SetIrqLine(line, level, Device.Name));
    }

    /// <summary>Ask the VM to end (debug-exit, reset, a halt policy).</summary>
    protected void EndVm(VmEndReason reason, string detail, int exitStatus = 0) =>
        Device.Vm.Tell(new RequestVmEnd(reason, detail, exitStatus));

    /// <summary>The host side of the VM (output sinks, input sources), shared by the actor system.</summary>
    protected HostIo HostIo => HostIo.For(Context.System);
}

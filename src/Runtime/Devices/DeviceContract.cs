using Akka.Actor;
using Akka.Event;
using KvmActors.Runtime.Bus;
using KvmActors.Runtime.Vm;

namespace KvmActors.Runtime.Devices;

/// <summary>
/// Marks a device actor class and gives it the short type name used in config (<c>type = uart-16550</c>).
/// The class must derive from <see cref="DeviceActor"/> (or be an actor with a constructor taking a
/// <see cref="DeviceContext"/>).
/// </summary>
[AttributeUsage(AttributeTargets.Class, Inherited = false)]
public sealed class DeviceTypeAttribute(string name) : Attribute
{
    public string Name { get; } = name;
}

/// <summary>The shape of the machine, for devices that report it to the guest (fw_cfg, Multiboot info).</summary>
public sealed record MachineInfo(int VcpuCount, ulong RamSize, IReadOnlyList<Memory.MemoryRegionSpec> Memory);

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
}

/// <summary>
/// Base class for device actors: turns port and MMIO messages into <see cref="OnRead"/> and
/// <see cref="OnWrite"/> calls and answers reads. A device declares its ranges in config; the runtime
/// routes accesses to it. Override <see cref="OnMessage"/> for messages of its own (host input, timers).
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

    protected sealed override void OnReceive(object message)
    {
        switch (message)
        {
            case PortWrite w:
                OnWrite(new DeviceAccess(AddressSpace.Port, w.Port, w.Offset, w.Size, w.VcpuId), w.Value);
                break;
            case PortRead r:
                Sender.Tell(new ReadCompleted(r.Seq, OnRead(new DeviceAccess(AddressSpace.Port, r.Port, r.Offset, r.Size, r.VcpuId)) & Mask(r.Size)));
                break;
            case MmioWrite w:
                OnWrite(new DeviceAccess(AddressSpace.Mmio, w.Address, w.Offset, w.Size, w.VcpuId), w.Value);
                break;
            case MmioRead r:
                Sender.Tell(new ReadCompleted(r.Seq, OnRead(new DeviceAccess(AddressSpace.Mmio, r.Address, r.Offset, r.Size, r.VcpuId)) & Mask(r.Size)));
                break;
            default:
                OnMessage(message);
                break;
        }
    }

    private static ulong Mask(int size) => size >= 8 ? ulong.MaxValue : (1UL << (size * 8)) - 1;

    /// <summary>Drive one of this device's IRQ lines (routed to KVM's irqchip when the VM has one).</summary>
    protected void SetIrq(int line, bool level) => Device.Vm.Tell(new SetIrqLine(line, level, Device.Name));

    /// <summary>Ask the VM to end (debug-exit, reset, a halt policy).</summary>
    protected void EndVm(VmEndReason reason, string detail, int exitStatus = 0) =>
        Device.Vm.Tell(new RequestVmEnd(reason, detail, exitStatus));

    /// <summary>The host side of the VM (output sinks, input sources), shared by the actor system.</summary>
    protected HostIo HostIo => HostIo.For(Context.System);
}

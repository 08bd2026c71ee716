using KvmActors.Sdk;

namespace KvmActors.Devices.Ioapic;

/// <summary>
/// <c>ioapic</c>: the userspace I/O APIC of a split irqchip (<c>guest.irqchip = split</c>; registers and delivery:
/// <see cref="IoapicModel"/>). Give it <c>mmio = "0xfec00000-0xfec00fff"</c> (where the MADT says it is). On creation
/// it takes the VM's IRQ lines (<see cref="DevicePlatform.AttachInterruptLines"/>): every device's line reaches it.
/// </summary>
/// <remarks>Options: none. Snapshot: the registers and pin state (<see cref="IoapicState"/>, version 1).</remarks>
[DeviceType("ioapic")]
public sealed class IoapicDevice : DeviceActor
{
    private readonly IoapicModel _model;

    public IoapicDevice(DeviceContext context) : base(context)
    {
        context.Options.RejectUnknown();
        var platform = context.Platform ?? throw new InvalidOperationException("ioapic needs the VM's platform");
        if (!platform.SplitIrqchip)
            throw new ConfigException(context.Options.File, $"guest.devices.{context.Name}.type",
                "a userspace IOAPIC needs guest.irqchip = split (with irqchip = true the kernel has its own)");
        _model = Kept(() => new IoapicModel(platform.SignalIoapicMessage));
        platform.AttachInterruptLines(_model);
    }

    protected override bool KeepsStateOnRestart => true;

    protected override ulong OnRead(DeviceAccess access) => _model.Read(access.Offset, access.Size);

    protected override void OnWrite(DeviceAccess access, ulong value) => _model.Write(access.Offset, access.Size, value);

    public const int StateVersion = 1;

    protected override DeviceState SaveState() => DeviceState.Of(Device.Type, StateVersion, _model.Save());

    protected override void RestoreState(DeviceState state)
    {
        state.ExpectVersion(StateVersion);
        _model.Restore(state.Read<IoapicState>());
    }
}

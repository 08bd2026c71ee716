using KvmActors.Sdk;

namespace KvmActors.Devices.PcTestdev;

/// <summary>
/// <c>pc-testdev</c>: QEMU's ISA test device (see <see cref="PcTestdevModel"/> for the registers). Give it the
/// ports <c>0xe0-0xeb</c> and <c>0x2000-0x2017</c> and the MMIO range <c>0xff000000-0xff00ffff</c>; it answers
/// by absolute address, as QEMU's device sits at fixed addresses. IRQ-port writes drive the in-kernel
/// irqchip's line (a no-op without <c>irqchip = true</c>).
/// </summary>
/// <remarks>Options: none. Snapshot: the data register, flush count and test memory (<see cref="PcTestdevState"/>, version 1).</remarks>
[DeviceType("pc-testdev")]
public sealed class PcTestdevDevice : DeviceActor
{
    private readonly PcTestdevModel _model = new();

    public PcTestdevDevice(DeviceContext context) : base(context) => context.Options.RejectUnknown();

    protected override ulong OnRead(DeviceAccess access) => access.Space == AddressSpace.Mmio
        ? _model.ReadIomem(access.Offset, access.Size)
        : _model.ReadPort((ushort)access.Address, access.Size);

    protected override void OnWrite(DeviceAccess access, ulong value)
    {
        if (access.Space == AddressSpace.Mmio)
        {
            _model.WriteIomem(access.Offset, access.Size, value);
            return;
        }
        if (_model.WritePort((ushort)access.Address, access.Size, value) is { } irq)
            SetIrq(irq.Line, irq.Level);
    }

    public const int StateVersion = 1;

    protected override DeviceState SaveState() => DeviceState.Of(Device.Type, StateVersion, _model.Save());

    protected override void RestoreState(DeviceState state)
    {
        state.ExpectVersion(StateVersion);
        _model.Restore(state.Read<PcTestdevState>());
    }
}

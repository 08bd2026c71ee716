using KvmActors.Sdk;

namespace KvmActors.Devices.I8259;

/// <summary>
/// <c>i8259</c>: the PC's two PICs for a split irqchip (<see cref="I8259Model"/>: registers, never delivers). Give it
/// <c>ports = ["0x20-0x21", "0xa0-0xa1"]</c>; it answers by absolute port.
/// </summary>
/// <remarks>Options: none. Snapshot: masks and initialisation state (<see cref="I8259State"/>, version 1).</remarks>
[DeviceType("i8259")]
public sealed class I8259Device : DeviceActor
{
    private readonly I8259Model _model = new();

    public I8259Device(DeviceContext context) : base(context) => context.Options.RejectUnknown();

    protected override ulong OnRead(DeviceAccess access) => _model.Read((ushort)access.Address);

    protected override void OnWrite(DeviceAccess access, ulong value) => _model.Write((ushort)access.Address, (byte)value);

    public const int StateVersion = 1;

    protected override DeviceState SaveState() => DeviceState.Of(Device.Type, StateVersion, _model.Save());

    protected override void RestoreState(DeviceState state)
    {
        state.ExpectVersion(StateVersion);
        _model.Restore(state.Read<I8259State>());
    }
}

using KvmActors.Sdk;

namespace KvmActors.Devices.PciTestdev;

/// <summary>
/// <c>pci-testdev</c>: QEMU's PCI test device (registers: <see cref="PciTestdevModel"/>) on the <c>pci-host</c>'s
/// bus: BAR 0 memory (4 KiB), BAR 1 I/O (256 ports), no interrupt. Give it no ports or MMIO: its BARs are where the
/// VM's firmware-like layout put them (<c>guest.pci</c> windows), or wherever the guest moves them.
/// </summary>
/// <remarks>Options: none. Snapshot: the selected test and the hit counts (<see cref="PciTestdevState"/>, version 1).</remarks>
[DeviceType("pci-testdev")]
public sealed class PciTestdevDevice : PciDeviceActor, IPciDevice
{
    private readonly PciTestdevModel _model = new();

    public PciTestdevDevice(DeviceContext context) : base(context) => context.Options.RejectUnknown();

    public static PciDeclaration DeclarePci(DeviceOptions options) => PciTestdevModel.Declaration;

    protected override ulong OnBarRead(int bar, ulong offset, int size, DeviceAccess access) => _model.Read(bar, offset, size);

    protected override void OnBarWrite(int bar, ulong offset, int size, ulong value, DeviceAccess access) =>
        _model.Write(bar, offset, size, value);

    public const int StateVersion = 1;

    protected override DeviceState SaveState() => DeviceState.Of(Device.Type, StateVersion, _model.Save());

    protected override void RestoreState(DeviceState state)
    {
        state.ExpectVersion(StateVersion);
        _model.Restore(state.Read<PciTestdevState>());
    }
}

using KvmActors.Sdk;

namespace KvmActors.Devices.Edu;

/// <summary>
/// <c>edu</c>: QEMU's educational PCI device (registers, DMA: <see cref="EduModel"/>) on the <c>pci-host</c>'s bus:
/// BAR 0 memory (1 MiB), INTx pin A (to the line the VM's firmware-like layout routed it to, in its interrupt-line
/// register), an MSI capability. Its DMA and MSIs go through the VM's platform, so an <c>intel-iommu</c> remaps them.
/// Give it no ports or MMIO.
/// </summary>
/// <remarks>Options: none. Snapshot: registers and the DMA buffer (<see cref="EduState"/>, version 1).</remarks>
[DeviceType("edu")]
public sealed class EduDevice : PciDeviceActor, IPciDevice, IEduBus
{
    private readonly EduModel _model;

    public EduDevice(DeviceContext context) : base(context)
    {
        context.Options.RejectUnknown();
        _model = new EduModel(this);
    }

    public static PciDeclaration DeclarePci(DeviceOptions options) => EduModel.Declaration;

    protected override ulong OnBarRead(int bar, ulong offset, int size, DeviceAccess access) => _model.Read(offset, size);

    protected override void OnBarWrite(int bar, ulong offset, int size, ulong value, DeviceAccess access) => _model.Write(offset, size, value);

    bool IEduBus.DmaRead(ulong busAddress, Span<byte> into) => DmaRead(busAddress, into);
    bool IEduBus.DmaWrite(ulong busAddress, ReadOnlySpan<byte> from) => DmaWrite(busAddress, from);
    void IEduBus.RaiseInterrupt() => RaiseInterrupt();
    void IEduBus.LowerInterrupt() => LowerInterrupt();
    bool IEduBus.MsiEnabled => MsiEnabled;

    public const int StateVersion = 1;

    protected override DeviceState SaveState() => DeviceState.Of(Device.Type, StateVersion, _model.Save());

    protected override void RestoreState(DeviceState state)
    {
        state.ExpectVersion(StateVersion);
        _model.Restore(state.Read<EduState>());
    }
}

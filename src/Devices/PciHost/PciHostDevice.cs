using Akka.Actor;
using KvmActors.Sdk;

namespace KvmActors.Devices.PciHost;

/// <summary>
/// <c>pci-host</c>: the PCI host bridge, configuration mechanism #1 at ports 0xcf8-0xcff (one range), over bus 0
/// with the PCI devices of the guest config (see <see cref="PciHostModel"/>). When a configuration write moves a
/// device's BAR or turns its decoding on or off, the bridge tells the VM (<see cref="PciBarsMapped"/>), which routes
/// the new ranges to that device; the writing vCPU waits until then (<c>WaitForWrites</c>), so its next instruction
/// already reaches the BAR where it now is.
/// </summary>
/// <remarks>
/// <para>Options: <c>chipset = i440fx</c> (default; 8086:1237 at 00:00.0, QEMU's pc) or <c>q35</c> (the Q35 MCH,
/// 8086:29c0, QEMU's q35). A function's MSI capability is published to its device as the guest writes it.</para>
/// <para>Snapshot: CONFIG_ADDRESS and every function's configuration space (<see cref="PciHostState"/>, version 1);
/// after a restore the bridge tells the VM where every BAR is, before the vCPUs run.</para>
/// </remarks>
[DeviceType("pci-host", WaitForWrites = true)]
public sealed class PciHostDevice : DeviceActor
{
    private readonly PciHostModel _model;

    public PciHostDevice(DeviceContext context) : base(context)
    {
        context.Options.RejectUnknown("chipset");
        var chipset = context.Options.GetEnum("chipset", ["i440fx", "q35"], "i440fx", "a chipset");
        _model = new PciHostModel(context.PciBus, q35: chipset == "q35");
    }

    protected override ulong OnRead(DeviceAccess access) => _model.Read(access.Offset, access.Size);

    protected override void OnWrite(DeviceAccess access, ulong value)
    {
        if (_model.Write(access.Offset, access.Size, value) is { } moved)
            Device.Vm.Tell(new PciBarsMapped(moved.Device, moved.Bars, DeferWriteCompletion()));
    }

    public const int StateVersion = 1;

    protected override DeviceState SaveState() => DeviceState.Of(Device.Type, StateVersion, _model.Save());

    protected override void RestoreState(DeviceState state)
    {
        state.ExpectVersion(StateVersion);
        _model.Restore(state.Read<PciHostState>());
        foreach (var (device, bars) in _model.AllMappings()) Device.Vm.Tell(new PciBarsMapped(device, bars));
    }
}

using Akka.Event;
using KvmActors.Sdk;

namespace KvmActors.Devices.PciHost;

/// <summary>
/// <c>pci-host-none</c>: a PCI host bridge's configuration mechanism #1 (ports 0xcf8-0xcff, one range) with
/// no devices on the bus. A guest finds the mechanism (its address register round-trips) and then finds
/// nothing: every configuration read is all ones. Behaviour in detail on <see cref="PciConfigNoDevices"/>.
/// </summary>
/// <remarks>
/// <para>Options: none (any key is rejected).</para>
/// <para>Snapshot: CONFIG_ADDRESS (<see cref="PciHostState"/>, version 1): with no devices it is the bridge's
/// only state, but a guest reads it back, so it is saved.</para>
/// </remarks>
/// <summary>A <c>pci-host-none</c>'s state: the CONFIG_ADDRESS register.</summary>
public sealed record PciHostState(uint Address);

[DeviceType("pci-host-none")]
public sealed class PciHostNoneDevice : DeviceActor
{
    private readonly PciConfigNoDevices _config = new();

    public PciHostNoneDevice(DeviceContext context) : base(context) => ValidateOptions(context.Options);

    /// <summary>Checks a <c>pci-host-none</c> options block: it takes no options.</summary>
    public static void ValidateOptions(DeviceOptions options) => options.RejectUnknown();

    protected override ulong OnRead(DeviceAccess access) => _config.Read(access.Offset, access.Size);

    protected override void OnWrite(DeviceAccess access, ulong value)
    {
        if (!_config.Write(access.Offset, access.Size, value))
            Log.Debug("{0}: dropped {1}-byte write of 0x{2:x} to port 0x{3:x}", Device.Name, access.Size, value, access.Address);
    }

    public const int StateVersion = 1;

    protected override DeviceState SaveState() => DeviceState.Of(Device.Type, StateVersion, new PciHostState(_config.Address));

    protected override void RestoreState(DeviceState state)
    {
        state.ExpectVersion(StateVersion);
        _config.Restore(state.Read<PciHostState>().Address);
    }
}

using KvmActors.Sdk;

namespace KvmActors.Devices.FwCfg;

/// <summary>
/// <c>fw-cfg</c>: QEMU's firmware configuration device, x86 I/O-port interface, traditional (non-DMA)
/// access only. One device covering ports 0x510-0x511: offset 0 is the selector, offset 1 the data register.
/// </summary>
/// <remarks>
/// <para>Items (see <see cref="FwCfgItems"/>): 0x0000 signature "QEMU"; 0x0001 ID, u32 LE = 1 (bit 0, the
/// traditional interface, is always set; bit 1, DMA, is clear); 0x0003 RAM size, u64 LE, from the machine;
/// 0x0005 number of CPUs, u16 LE. Any other key reads as zeros.</para>
/// <para>Selector (offset 0): a write selects the item given by its low 16 bits (the spec's width is 16;
/// narrower or wider writes are accepted the same way) and rewinds the data offset to 0. Bit 14 (write
/// channel) is ignored for lookup. Reads of the selector (write-only in the spec) return all ones.</para>
/// <para>Data (offset 1): each byte read returns the next byte of the item and advances; past the end reads
/// return 0. The spec's I/O data register is 8 bits; a wider read here returns that many consecutive bytes,
/// the first in the low byte. Writes are ignored, as in QEMU since 2.4 for this interface.</para>
/// <para>Options: none yet (any key is rejected).</para>
/// <para>Snapshot: the selector and data offset (<see cref="FwCfgPortState"/>, version 1); the items come from
/// the machine, as they did when the device was first created.</para>
/// </remarks>
[DeviceType("fw-cfg")]
public sealed class FwCfgDevice : DeviceActor
{
    public const ulong SelectorOffset = 0;
    public const ulong DataOffset = 1;

    private readonly FwCfgPort _port;

    public FwCfgDevice(DeviceContext context) : base(context)
    {
        ValidateOptions(context.Options);
        _port = new FwCfgPort(FwCfgItems.ForMachine(context.Machine));
    }

    /// <summary>Checks an <c>fw-cfg</c> options block: it takes no options yet.</summary>
    public static void ValidateOptions(DeviceOptions options) => options.RejectUnknown();

    protected override ulong OnRead(DeviceAccess access) => access.Offset switch
    {
        DataOffset => _port.Read(access.Size),
        _ => access.AllOnes,
    };

    protected override void OnWrite(DeviceAccess access, ulong value)
    {
        if (access.Offset == SelectorOffset) _port.Select((ushort)value);
        // Data writes: ignored.
    }

    public const int StateVersion = 1;

    protected override DeviceState SaveState() => DeviceState.Of(Device.Type, StateVersion, _port.Save());

    protected override void RestoreState(DeviceState state)
    {
        state.ExpectVersion(StateVersion);
        _port.Restore(state.Read<FwCfgPortState>());
    }
}

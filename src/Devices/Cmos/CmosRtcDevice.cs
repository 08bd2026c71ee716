using KvmActors.Sdk;

namespace KvmActors.Devices.Cmos;

/// <summary>
/// <c>cmos-rtc</c>: CMOS RAM and the real-time clock at ports <c>0x70-0x71</c> (index with the NMI-mask bit, data);
/// time from the host's UTC clock; the memory-size and CPU-count bytes firmware stores. See <see cref="CmosRtc"/>.
/// </summary>
/// <remarks>Options: none. Snapshot: the CMOS bytes, index, NMI mask and clock offset (<see cref="CmosRtcState"/>, version 1).</remarks>
[DeviceType("cmos-rtc")]
public sealed class CmosRtcDevice : DeviceActor
{
    private const ulong FourGiB = 1UL << 32;
    private readonly CmosRtc _cmos;

    public CmosRtcDevice(DeviceContext context) : base(context)
    {
        context.Options.RejectUnknown();
        var ram = context.Machine.Memory.Where(r => !r.ReadOnly).ToList();
        ulong below = 0, above = 0;
        foreach (var r in ram)
        {
            var end = r.GuestAddress + r.Size;
            if (r.GuestAddress < FourGiB) below += Math.Min(end, FourGiB) - r.GuestAddress;
            if (end > FourGiB) above += end - Math.Max(r.GuestAddress, FourGiB);
        }
        _cmos = new CmosRtc(() => DateTime.UtcNow, context.Machine.VcpuCount, below, above);
    }

    protected override ulong OnRead(DeviceAccess access)
    {
        ulong value = 0;
        for (var i = 0; i < access.Size; i++) value |= (ulong)_cmos.Read(access.Offset + (ulong)i) << (8 * i);
        return value;
    }

    protected override void OnWrite(DeviceAccess access, ulong value)
    {
        for (var i = 0; i < access.Size; i++) _cmos.Write(access.Offset + (ulong)i, (byte)(value >> (8 * i)));
    }

    public const int StateVersion = 1;

    protected override DeviceState SaveState() => DeviceState.Of(Device.Type, StateVersion, _cmos.Save());

    protected override void RestoreState(DeviceState state)
    {
        state.ExpectVersion(StateVersion);
        _cmos.Restore(state.Read<CmosRtcState>());
    }
}

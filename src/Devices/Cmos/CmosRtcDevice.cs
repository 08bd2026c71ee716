using Akka.Actor;
using KvmActors.Sdk;

namespace KvmActors.Devices.Cmos;

/// <summary>
/// <c>cmos-rtc</c>: CMOS RAM and the real-time clock at ports <c>0x70-0x71</c> (index with the NMI-mask bit, data);
/// time from the host's UTC clock; the memory-size and CPU-count bytes firmware stores; the update-ended, alarm
/// and periodic interrupts on IRQ 8 (as register B enables them). See <see cref="CmosRtc"/>.
/// </summary>
/// <remarks>
/// <para>Options: <c>irq</c> (default the device's first <c>irqs</c> entry, else 8). An alarm with AIE set is also a
/// wake event for a suspended VM (<see cref="WakeEvent"/> "rtc", which acpi-pm takes when RTC_EN is set).</para>
/// <para>Interrupts come from a timer armed only while one is enabled, for the next second's update or periodic
/// tick; periodic rates above the scheduler's tick (about 100 Hz) are coalesced to it: PF and the IRQ stay up until
/// register C is read, so a guest sees every period it waits for, not one interrupt per period.</para>
/// <para>Snapshot: the CMOS bytes, index, NMI mask, clock offset and register C (<see cref="CmosRtcState"/>, version 1).</para>
/// </remarks>
[DeviceType("cmos-rtc")]
public sealed class CmosRtcDevice : DeviceActor, IWithTimers
{
    private const ulong FourGiB = 1UL << 32;
    private const string TickTimer = "rtc-tick";
    private readonly CmosRtc _cmos;
    private readonly int _irq;
    private bool _irqLevel;

    public ITimerScheduler Timers { get; set; } = null!;

    public CmosRtcDevice(DeviceContext context) : base(context)
    {
        context.Options.RejectUnknown("irq");
        _irq = (int)context.Options.GetInteger("irq", context.Irqs.Count > 0 ? context.Irqs[0] : 8, 0, 1023);
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
        Update(_cmos.CatchUp());
        return value;
    }

    protected override void OnWrite(DeviceAccess access, ulong value)
    {
        for (var i = 0; i < access.Size; i++) _cmos.Write(access.Offset + (ulong)i, (byte)(value >> (8 * i)));
        Update(_cmos.CatchUp());
    }

    protected override void OnMessage(object message)
    {
        if (message is Tick) Update(_cmos.CatchUp());
        else base.OnMessage(message);
    }

    /// <summary>
    /// After an access or a tick (with what the clock did since the last one): IRQ 8 follows IRQF (raised when it rises,
    /// lowered when register C's read clears it); an alarm with AIE set is a wake event; the timer is armed for the next
    /// enabled interrupt.
    /// </summary>
    private void Update(byte events)
    {
        if (_cmos.Irq != _irqLevel)
        {
            _irqLevel = _cmos.Irq;
            SetIrq(_irq, _irqLevel);
        }
        if ((events & CmosRtc.Af) != 0 && (_cmos.ReadRegister(CmosRtc.RegB) & CmosRtc.Aie) != 0)
            Device.Vm.Tell(new WakeEvent("rtc"), Self);
        if (_cmos.NextInterruptIn() is { } next)
        {
            // Re-armed only for an earlier deadline: a guest polling the clock costs no timer per access.
            var due = Environment.TickCount64 + (long)next.TotalMilliseconds + 1;
            if (_timerDue is { } pending && pending <= due && Timers.IsTimerActive(TickTimer)) return;
            _timerDue = due;
            Timers.StartSingleTimer(TickTimer, Tick.Instance, next + TimeSpan.FromMilliseconds(1));
        }
        else if (_timerDue is not null)
        {
            _timerDue = null;
            Timers.Cancel(TickTimer);
        }
    }

    private long? _timerDue;

    private sealed class Tick { public static readonly Tick Instance = new(); }

    public const int StateVersion = 1;

    protected override DeviceState SaveState() => DeviceState.Of(Device.Type, StateVersion, _cmos.Save());

    protected override void RestoreState(DeviceState state)
    {
        state.ExpectVersion(StateVersion);
        _cmos.Restore(state.Read<CmosRtcState>());
        Update(0);
    }
}

using KvmActors.Sdk;

namespace KvmActors.Devices.AcpiPm;

/// <summary>What a PM1 control write asked for.</summary>
public enum SleepRequest { None, Suspend, PowerOff }

/// <summary>
/// An <see cref="AcpiPmRegisters"/>'s state: PM1 status, enable and control, and how far the PM timer had run
/// (the restored timer goes on counting from there).
/// </summary>
public sealed record AcpiPmState(ushort Status, ushort Enable, ushort Control, TimeSpan TimerElapsed);

/// <summary>
/// The ACPI fixed-hardware registers of a PIIX4-style PM block (QEMU's <c>pc</c> machine, base 0x600), by offset:
/// <list type="bullet">
/// <item>0-1 PM1_STS: write-1-to-clear status bits (TMR_STS 0, PWRBTN_STS 8, RTC_STS 10, WAK_STS 15).</item>
/// <item>2-3 PM1_EN: enable bits, read/write.</item>
/// <item>4-5 PM1_CNT: SCI_EN (bit 0) always reads 1 (ACPI mode is on, no SMI_CMD); a write with SLP_EN (bit 13)
/// asks for the sleep state in SLP_TYP (bits 10-12): the DSDT's S3 type suspends, S5 powers off.</item>
/// <item>8-11 PM_TMR: a 24-bit counter at 3.579545 MHz, read-only, running from the device's creation.</item>
/// </list>
/// </summary>
public sealed class AcpiPmRegisters(Func<TimeSpan> clock, int s3Type = 1, int s5Type = 0)
{
    public const double TimerHz = 3_579_545;
    public const ushort SciEn = 1, SlpEn = 1 << 13;
    public const uint TimerMask = 0xffffff;

    private ushort _status, _enable, _control = SciEn;
    private TimeSpan _timerBase; // added to the clock: moves the timer to where a restored state had it

    private TimeSpan TimerElapsed => clock() + _timerBase;

    /// <summary>The timer's count now: ticks since the clock's zero (plus a restored state's run), 24 bits.</summary>
    public uint Timer => (uint)((ulong)(TimerElapsed.Ticks * (TimerHz / TimeSpan.TicksPerSecond)) & TimerMask);

    public ulong Read(ulong offset, int size)
    {
        ulong value = 0;
        for (var i = 0; i < size; i++) value |= (ulong)ReadByte(offset + (ulong)i) << (8 * i);
        return value;
    }

    private byte ReadByte(ulong offset) => offset switch
    {
        0 => (byte)_status, 1 => (byte)(_status >> 8),
        2 => (byte)_enable, 3 => (byte)(_enable >> 8),
        4 => (byte)_control, 5 => (byte)(_control >> 8),
        >= 8 and <= 11 => (byte)(Timer >> (8 * (int)(offset - 8))),
        _ => 0,
    };

    /// <summary>A write of <paramref name="size"/> bytes at <paramref name="offset"/>; what it asked for.</summary>
    public SleepRequest Write(ulong offset, int size, ulong value)
    {
        var request = SleepRequest.None;
        for (var i = 0; i < size; i++)
        {
            var o = offset + (ulong)i;
            var b = (byte)(value >> (8 * i));
            switch (o)
            {
                case 0: _status &= (ushort)~b; break;
                case 1: _status &= (ushort)~(b << 8); break;
                case 2: _enable = (ushort)((_enable & 0xff00) | b); break;
                case 3: _enable = (ushort)((_enable & 0x00ff) | (b << 8)); break;
                case 4: _control = (ushort)((_control & 0xff00) | b | SciEn); break;
                case 5:
                    // SLP_EN is write-only: it triggers the transition and reads back 0.
                    var written = (ushort)((_control & 0x00ff) | (b << 8));
                    _control = (ushort)(written & ~SlpEn);
                    if ((written & SlpEn) != 0)
                    {
                        var type = (written >> 10) & 7;
                        request = type == s3Type ? SleepRequest.Suspend : type == s5Type ? SleepRequest.PowerOff : SleepRequest.None;
                    }
                    break;
            }
        }
        return request;
    }

    public const ushort RtcEn = 1 << 10, RtcSts = 1 << 10, WakSts = 1 << 15;

    /// <summary>
    /// A wake event while suspended: true when its PM1 enable bit is set (so far "rtc": RTC_EN), and then its status
    /// bit and WAK_STS are set, as the chipset sets them on waking.
    /// </summary>
    public bool Wake(string source)
    {
        if (source != "rtc" || (_enable & RtcEn) == 0) return false;
        _status |= RtcSts | WakSts;
        return true;
    }

    public ushort Status => _status;
    public ushort Enable => _enable;
    public ushort Control => _control;

    public AcpiPmState Save() => new(_status, _enable, _control, TimerElapsed);

    /// <summary>Takes a saved state, after checking it (a <see cref="DeviceStateException"/> names the field that cannot be).</summary>
    public void Restore(AcpiPmState state)
    {
        if ((state.Control & SciEn) == 0 || (state.Control & SlpEn) != 0)
            throw new DeviceStateException($"acpi-pm state: control: 0x{state.Control:x4} must have SCI_EN (bit 0) set and SLP_EN (bit 13) clear");
        if (state.TimerElapsed < TimeSpan.Zero)
            throw new DeviceStateException($"acpi-pm state: timerElapsed: {state.TimerElapsed} is negative");
        _status = state.Status;
        _enable = state.Enable;
        _control = state.Control;
        _timerBase = state.TimerElapsed - clock();
    }
}

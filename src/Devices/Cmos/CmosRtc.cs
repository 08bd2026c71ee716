using KvmActors.Sdk;

namespace KvmActors.Devices.Cmos;

/// <summary>
/// A <see cref="CmosRtc"/>'s state: the 128 bytes, the index and NMI mask, the guest clock's offset from the
/// host's UTC clock (so a restored clock goes on from host time as it did, and keeps what the guest set), and the
/// interrupt flags of register C (absent in version 1 states: none up).
/// </summary>
public sealed record CmosRtcState(byte[] Ram, byte Index, bool NmiMasked, TimeSpan ClockOffset, byte Flags = 0);

/// <summary>
/// The PC's CMOS RAM and MC146818 real-time clock, behind an index port (0x70) and a data port (0x71).
/// </summary>
/// <remarks>
/// <para>Index port: bits 0-6 select one of 128 bytes; bit 7 is the NMI mask (kept, reported by
/// <see cref="NmiMasked"/>; KVM's NMIs do not pass through it). Reading the index port gives 0xff, as on QEMU.</para>
/// <para>Clock: registers 0, 2, 4, 6-9 (seconds, minutes, hours, weekday, day, month, year) and 0x32 (century) give
/// the host's UTC time plus an offset that guest writes move; BCD unless register B's DM bit (2) is set,
/// 12-hour with bit 7 = PM unless its 24-hour bit (1) is set. Register A: divider 0x26 with UIP (bit 7) set in
/// the last 244 µs of every second, as the update cycle is; its rate bits (0-3) set the periodic flag's rate
/// (1 and 2: 256 and 128 Hz, n = 3-15: 65536 &gt;&gt; n Hz, 0: none). Register B: 0x02 after reset, read/write;
/// SET (bit 7) stops the updates. C: the interrupt flags, cleared by reading it: UF (bit 4) at every second's update,
/// AF (bit 5) when seconds, minutes and hours match the alarm registers 1, 3, 5 (a value with bits 6-7 set matches
/// any), PF (bit 6) at the periodic rate, and IRQF (bit 7) while one of them is set with its enable bit in B (UIE 4,
/// AIE 5, PIE 6): that is the IRQ 8 level (<see cref="Irq"/>). D: 0x80 (battery good). The flags follow the clock
/// as it is read (<see cref="CatchUp"/>); the device calls it from a timer too, for the interrupts.</para>
/// <para>Firmware bytes, as SeaBIOS/QEMU store them: 0x15-0x16 base memory (640 KiB); 0x17-0x18 and 0x30-0x31 KiB
/// of extended memory above 1 MiB (at most 0xffff); 0x34-0x35 64 KiB units above 16 MiB below 4 GiB; 0x5b-0x5d
/// 64 KiB units above 4 GiB; 0x5f the number of CPUs minus one. Every other byte is plain read/write RAM.</para>
/// </remarks>
public sealed class CmosRtc
{
    public const byte RegA = 0x0a, RegB = 0x0b, RegC = 0x0c, RegD = 0x0d, Century = 0x32;
    public const byte SecondsAlarm = 1, MinutesAlarm = 3, HoursAlarm = 5;
    public const byte Set = 0x80, Pie = 0x40, Aie = 0x20, Uie = 0x10;
    public const byte Irqf = 0x80, Pf = 0x40, Af = 0x20, Uf = 0x10;
    private const byte BinaryMode = 0x04, Hours24 = 0x02, Uip = 0x80;

    private byte _flags;                 // register C
    private long _lastSecond;            // the last guest-clock second whose update was counted
    private long _lastPeriod;            // the last periodic tick counted (host ticks / period)

    private readonly byte[] _ram = new byte[128];
    private readonly Func<DateTime> _utcNow;
    private TimeSpan _offset;
    private byte _index;

    public CmosRtc(Func<DateTime> utcNow, int vcpus, ulong ramBelow4G, ulong ramAbove4G)
    {
        _utcNow = utcNow;
        _ram[RegA] = 0x26;
        _ram[RegB] = Hours24;
        _ram[RegD] = 0x80;
        Put16(0x15, 640);
        var extendedKib = ramBelow4G > 1UL << 20 ? Math.Min((ramBelow4G - (1UL << 20)) / 1024, 0xffff) : 0;
        Put16(0x17, (ushort)extendedKib);
        Put16(0x30, (ushort)extendedKib);
        var above16M = ramBelow4G > 16UL << 20 ? Math.Min((ramBelow4G - (16UL << 20)) >> 16, 0xffff) : 0;
        Put16(0x34, (ushort)above16M);
        var high = ramAbove4G >> 16;
        _ram[0x5b] = (byte)high;
        _ram[0x5c] = (byte)(high >> 8);
        _ram[0x5d] = (byte)(high >> 16);
        _ram[0x5f] = (byte)(vcpus - 1);
        _lastSecond = Now.Ticks / TimeSpan.TicksPerSecond;
        _lastPeriod = _utcNow().Ticks / Period!.Value.Ticks;
    }

    /// <summary>The IRQ 8 level: a flag of register C is up with its enable bit in register B.</summary>
    public bool Irq => (_flags & Irqf) != 0;

    /// <summary>The periodic rate from register A's rate bits, as a period (null: off).</summary>
    public TimeSpan? Period => (_ram[RegA] & 0x0f) switch
    {
        0 => null,
        1 => TimeSpan.FromTicks(TimeSpan.TicksPerSecond / 256),
        2 => TimeSpan.FromTicks(TimeSpan.TicksPerSecond / 128),
        var n => TimeSpan.FromTicks(TimeSpan.TicksPerSecond * (1L << (n - 1)) / 32768),
    };

    /// <summary>
    /// Bring register C up to the clock: UF for every second's update passed since the last call, AF if one of those
    /// seconds matched the alarm, PF if a periodic tick passed. Returns what happened (UF, AF, PF), whether or not that
    /// flag was already up: an alarm wakes a sleeping machine each time it matches.
    /// </summary>
    public byte CatchUp()
    {
        byte events = 0;
        var now = Now;
        var second = now.Ticks / TimeSpan.TicksPerSecond;
        if ((_ram[RegB] & Set) != 0) _lastSecond = second; // SET: no updates, none owed afterwards
        if (second > _lastSecond)
        {
            events |= Uf;
            // Every alarm time recurs within a day: further back than that, it matched.
            var from = Math.Max(_lastSecond + 1, second - 86_400);
            for (var s = from; s <= second && (events & Af) == 0; s++)
                if (AlarmMatches(new DateTime(s * TimeSpan.TicksPerSecond))) events |= Af;
            _lastSecond = second;
        }
        if (Period is { } period)
        {
            var tick = _utcNow().Ticks / period.Ticks;
            if (tick > _lastPeriod) events |= Pf;
            _lastPeriod = tick;
        }
        _flags |= events;
        UpdateIrqf();
        return events;
    }

    /// <summary>How long until the next flag an enabled interrupt waits for can rise (null: none is enabled).</summary>
    public TimeSpan? NextInterruptIn()
    {
        var b = _ram[RegB];
        TimeSpan? next = null;
        if ((b & (Uie | Aie)) != 0 && (b & Set) == 0)
            next = TimeSpan.FromTicks(TimeSpan.TicksPerSecond - Now.Ticks % TimeSpan.TicksPerSecond);
        if ((b & Pie) != 0 && Period is { } period)
        {
            var p = TimeSpan.FromTicks(period.Ticks - _utcNow().Ticks % period.Ticks);
            if (next is null || p < next) next = p;
        }
        return next;
    }

    private bool AlarmMatches(DateTime t)
    {
        static bool DontCare(byte v) => (v & 0xc0) == 0xc0;
        byte s = _ram[SecondsAlarm], m = _ram[MinutesAlarm], h = _ram[HoursAlarm];
        return (DontCare(s) || Decode(s) == t.Second)
               && (DontCare(m) || Decode(m) == t.Minute)
               && (DontCare(h) || DecodeHour(h) == t.Hour);
    }

    private void UpdateIrqf()
    {
        if ((_flags & _ram[RegB] & (Pf | Af | Uf)) != 0) _flags |= Irqf;
        else _flags &= unchecked((byte)~Irqf);
    }

    public bool NmiMasked { get; private set; }
    public byte Index => _index;

    private void Put16(int at, ushort v) { _ram[at] = (byte)v; _ram[at + 1] = (byte)(v >> 8); }

    /// <summary>A byte read at <paramref name="offset"/> (0 index port, 1 data port).</summary>
    public byte Read(ulong offset) => offset == 0 ? (byte)0xff : ReadRegister(_index);

    public void Write(ulong offset, byte value)
    {
        if (offset == 0)
        {
            _index = (byte)(value & 0x7f);
            NmiMasked = (value & 0x80) != 0;
            return;
        }
        WriteRegister(_index, value);
    }

    private DateTime Now => _utcNow() + _offset;

    public byte ReadRegister(byte reg)
    {
        var now = Now;
        return reg switch
        {
            0 => Encode(now.Second),
            2 => Encode(now.Minute),
            4 => EncodeHour(now.Hour),
            6 => Encode((int)now.DayOfWeek + 1),
            7 => Encode(now.Day),
            8 => Encode(now.Month),
            9 => Encode(now.Year % 100),
            Century => Encode(now.Year / 100),
            // UIP: the update cycle runs in the last 244 µs of each second.
            RegA => (byte)((_ram[RegA] & 0x7f) | (now.Ticks % TimeSpan.TicksPerSecond >= TimeSpan.TicksPerSecond - 2440 ? Uip : 0)),
            RegC => ReadAndClearFlags(),
            _ => _ram[reg & 0x7f],
        };
    }

    private byte ReadAndClearFlags()
    {
        CatchUp();
        var c = _flags;
        _flags = 0;
        return c;
    }

    public void WriteRegister(byte reg, byte value)
    {
        CatchUp(); // what the clock did under the old register values comes first
        switch (reg)
        {
            case 0 or 2 or 4 or 7 or 8 or 9 or Century:
                SetClockField(reg, value);
                break;
            case 6:
                break; // the weekday follows from the date
            case RegA:
                _ram[RegA] = (byte)(value & 0x7f); // UIP is read-only
                _lastPeriod = Period is { } period ? _utcNow().Ticks / period.Ticks : 0;
                break;
            case RegB:
                _ram[RegB] = value;
                UpdateIrqf();
                break;
            case RegC or RegD:
                break; // read-only
            default:
                _ram[reg & 0x7f] = value;
                break;
        }
    }

    private bool Binary => (_ram[RegB] & BinaryMode) != 0;
    private byte Encode(int v) => Binary ? (byte)v : (byte)(((v / 10) << 4) | (v % 10));
    private int Decode(byte v) => Binary ? v : ((v >> 4) * 10) + (v & 0x0f);

    private byte EncodeHour(int hour)
    {
        if ((_ram[RegB] & Hours24) != 0) return Encode(hour);
        var h12 = hour % 12 == 0 ? 12 : hour % 12;
        return (byte)(Encode(h12) | (hour >= 12 ? 0x80 : 0));
    }

    private int DecodeHour(byte v)
    {
        if ((_ram[RegB] & Hours24) != 0) return Decode(v);
        var h = Decode((byte)(v & 0x7f)) % 12;
        return (v & 0x80) != 0 ? h + 12 : h;
    }

    /// <summary>A guest sets one field of the clock: the offset from the host clock moves so the field reads back.</summary>
    private void SetClockField(byte reg, byte value)
    {
        var now = Now;
        int year = now.Year, month = now.Month, day = now.Day, hour = now.Hour, minute = now.Minute, second = now.Second;
        switch (reg)
        {
            case 0: second = Decode(value); break;
            case 2: minute = Decode(value); break;
            case 4: hour = DecodeHour(value); break;
            case 7: day = Decode(value); break;
            case 8: month = Decode(value); break;
            case 9: year = year / 100 * 100 + Decode(value); break;
            case Century: year = Decode(value) * 100 + year % 100; break;
        }
        if (month is < 1 or > 12 || year is < 1 or > 9999 || day < 1 || day > DateTime.DaysInMonth(year, month)
            || hour > 23 || minute > 59 || second > 59)
            return; // an impossible date is dropped, not stored
        var wanted = new DateTime(year, month, day, hour, minute, second, DateTimeKind.Utc).AddTicks(now.Ticks % TimeSpan.TicksPerSecond);
        _offset += wanted - now;
        _lastSecond = Now.Ticks / TimeSpan.TicksPerSecond; // a clock set is no update: no flags owed for the jump
    }

    public CmosRtcState Save() => new(_ram.ToArray(), _index, NmiMasked, _offset, _flags);

    /// <summary>Takes a saved state, after checking every field (a <see cref="DeviceStateException"/> names the one that cannot be).</summary>
    public void Restore(CmosRtcState state)
    {
        if (state.Ram.Length != _ram.Length)
            throw Invalid("ram", $"{state.Ram.Length} bytes, CMOS has {_ram.Length}");
        if (state.Index > 0x7f)
            throw Invalid("index", $"0x{state.Index:x2} is past the last byte (0x7f; the NMI mask is its own field)");
        var guestTicks = (decimal)_utcNow().Ticks + state.ClockOffset.Ticks;
        if (guestTicks < DateTime.MinValue.Ticks || guestTicks > DateTime.MaxValue.Ticks)
            throw Invalid("clockOffset", $"{state.ClockOffset} puts the clock outside years 1..9999");
        state.Ram.CopyTo(_ram, 0);
        _index = state.Index;
        NmiMasked = state.NmiMasked;
        _offset = state.ClockOffset;
        _flags = state.Flags;
        _lastSecond = Now.Ticks / TimeSpan.TicksPerSecond;
    }

    private static DeviceStateException Invalid(string field, string problem) => new($"cmos-rtc state: {field}: {problem}");
}

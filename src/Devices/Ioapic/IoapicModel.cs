using KvmActors.Sdk;

namespace KvmActors.Devices.Ioapic;

/// <summary>A <see cref="IoapicModel"/>'s state: IOREGSEL, the ID, the 24 redirection entries, the pending (IRR) and line levels.</summary>
public sealed record IoapicState(uint Select, uint Id, IReadOnlyList<ulong> Entries, uint Irr, uint Lines);

/// <summary>
/// A PC's I/O APIC (82093AA register interface, version 0x20 with the EOI register) with 24 pins, as QEMU's
/// userspace IOAPIC: IOREGSEL at offset 0x00, IOWIN at 0x10, EOI at 0x40; registers ID (0x00, bits 27:24),
/// version (0x01: 0x00170020), arbitration (0x02, the ID) and the redirection table (0x10 + 2n low, 0x11 + 2n high).
/// Entries start masked. A pin's message: vector, delivery mode, destination mode and destination — or, with bit 48
/// set, VT-d's remappable format (interrupt index in bits 63:49 and 11) — goes out as an MSI through the platform
/// (so an IOMMU remaps it), to KVM's local APICs.
/// </summary>
/// <remarks>
/// <para>Edge-triggered: a rising edge on an unmasked pin sends the message; an edge on a masked pin stays pending and
/// is sent when the entry is unmasked. Level-triggered: an asserted unmasked pin sends the message and sets Remote IRR;
/// no further message until an EOI for the entry's vector (from the local APIC, KVM_EXIT_IOAPIC_EOI, or the EOI
/// register) clears Remote IRR, after which a still-asserted pin sends again. Polarity (bit 13) active low inverts the
/// pin. Delivery status (bit 12) always reads 0: a message is sent at once.</para>
/// <para>Thread-safe: pins are driven from the raising devices' threads.</para>
/// </remarks>
public sealed class IoapicModel : IInterruptLines
{
    public const int Pins = 24;
    public const ulong RegisterSelect = 0x00, Window = 0x10, EoiRegister = 0x40;
    public const uint VersionValue = (Pins - 1) << 16 | 0x20;
    public const ulong Masked = 1UL << 16, RemoteIrr = 1UL << 14, LevelTriggered = 1UL << 15, ActiveLow = 1UL << 13;
    // The bits software writes: vector, delivery mode, destination mode, polarity, trigger, mask, 63:48; not 12, 14.
    private const ulong Writable = 0xffff_0000_0000_0000UL | (0x1_ffffUL & ~(1UL << 12 | RemoteIrr));

    private readonly object _lock = new();
    private readonly Func<int, MsiMessage, bool> _send;
    private readonly ulong[] _entries = new ulong[Pins];
    private uint _select, _id, _irr, _lines;

    /// <param name="send">Sends pin n's message (the platform: IOMMU remapping, then KVM_SIGNAL_MSI or the pin's GSI route).</param>
    public IoapicModel(Func<int, MsiMessage, bool> send)
    {
        _send = send;
        for (var i = 0; i < Pins; i++) _entries[i] = Masked;
    }

    public ulong Entry(int pin) { lock (_lock) return _entries[pin]; }

    public ulong Read(ulong offset, int size)
    {
        lock (_lock)
        {
            if (offset == RegisterSelect) return _select;
            if (offset == Window) return ReadRegister(_select);
            return 0;
        }
    }

    public void Write(ulong offset, int size, ulong value)
    {
        lock (_lock)
        {
            if (offset == RegisterSelect) _select = (uint)value & 0xff;
            else if (offset == Window) WriteRegister(_select, (uint)value);
            else if (offset == EoiRegister) Eoi((int)(value & 0xff));
        }
    }

    private uint ReadRegister(uint reg) => reg switch
    {
        0x00 => _id << 24,
        0x01 => VersionValue,
        0x02 => _id << 24,
        >= 0x10 and < 0x10 + 2 * Pins => (reg & 1) == 0 ? (uint)_entries[(reg - 0x10) / 2] : (uint)(_entries[(reg - 0x10) / 2] >> 32),
        _ => 0,
    };

    private void WriteRegister(uint reg, uint value)
    {
        if (reg == 0x00) { _id = (value >> 24) & 0xf; return; }
        if (reg is < 0x10 or >= 0x10 + 2 * Pins) return; // version, arbitration: read-only
        var pin = (int)(reg - 0x10) / 2;
        var old = _entries[pin];
        var written = (reg & 1) == 0 ? (old & ~0xffff_ffffUL) | value : (old & 0xffff_ffffUL) | (ulong)value << 32;
        var entry = (old & ~Writable) | (written & Writable);
        if ((entry & LevelTriggered) == 0) entry &= ~RemoteIrr; // an edge entry has no Remote IRR
        _entries[pin] = entry;
        Service(pin);
    }

    public void SetLine(int line, bool level)
    {
        if (line is < 0 or >= Pins) return;
        lock (_lock)
        {
            var bit = 1u << line;
            var was = (_lines & bit) != 0;
            _lines = level ? _lines | bit : _lines & ~bit;
            var asserted = level != ((_entries[line] & ActiveLow) != 0);
            if ((_entries[line] & LevelTriggered) != 0)
                _irr = asserted ? _irr | bit : _irr & ~bit;
            else if (level && !was && asserted || !level && was && asserted)
                _irr |= bit; // the edge into the asserted state
            Service(line);
        }
    }

    public void EndOfInterrupt(int vector)
    {
        lock (_lock) Eoi(vector);
    }

    private void Eoi(int vector)
    {
        for (var pin = 0; pin < Pins; pin++)
        {
            var e = _entries[pin];
            if ((e & LevelTriggered) == 0 || (e & RemoteIrr) == 0 || (int)(e & 0xff) != vector) continue;
            _entries[pin] = e & ~RemoteIrr;
            Service(pin);
        }
    }

    private void Service(int pin)
    {
        var bit = 1u << pin;
        var e = _entries[pin];
        if ((_irr & bit) == 0 || (e & Masked) != 0) return;
        var level = (e & LevelTriggered) != 0;
        if (level)
        {
            if ((e & RemoteIrr) != 0) return;
            _entries[pin] = e | RemoteIrr;
        }
        else _irr &= ~bit;
        _send(pin, Message(e));
    }

    /// <summary>
    /// The interrupt message of a redirection entry: bits 63:48 go to address bits 19:4 and the destination mode (bit 11)
    /// to address bit 2, which in the compatible format is the destination ID (63:56 → 19:12) and in the remappable
    /// format (bit 48 → 4) the interrupt index (63:49 → 19:5, bit 11 → handle bit 15); the data carries vector,
    /// delivery mode and trigger mode (level: with the assert bit 14).
    /// </summary>
    public static MsiMessage Message(ulong entry)
    {
        var address = 0xfee0_0000UL | ((entry >> 48) & 0xffff) << 4 | ((entry >> 11) & 1) << 2;
        var level = (entry & LevelTriggered) != 0;
        var data = (uint)(entry & 0xff) | (uint)((entry >> 8) & 7) << 8 | (level ? 1u << 15 | 1u << 14 : 0);
        return new MsiMessage(address, data);
    }

    public IoapicState Save()
    {
        lock (_lock) return new IoapicState(_select, _id, _entries.ToArray(), _irr, _lines);
    }

    public void Restore(IoapicState s)
    {
        if (s.Entries.Count != Pins) throw new DeviceStateException($"ioapic state: {s.Entries.Count} redirection entries, not {Pins}");
        lock (_lock)
        {
            (_select, _id, _irr, _lines) = (s.Select & 0xff, s.Id & 0xf, s.Irr, s.Lines);
            for (var i = 0; i < Pins; i++) _entries[i] = s.Entries[i];
        }
    }
}

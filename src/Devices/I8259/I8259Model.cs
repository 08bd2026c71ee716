namespace KvmActors.Devices.I8259;

/// <summary>An <see cref="I8259Model"/>'s state, per controller (master, slave).</summary>
public sealed record I8259State(byte[] Masks, byte[] Vectors, byte[] InitStep, bool[] ExpectIcw4, bool[] ReadIsr);

/// <summary>
/// The two 8259A interrupt controllers of a PC (master at 0x20-0x21, slave at 0xa0-0xa1) as a split-irqchip machine
/// has them when nothing routes interrupts through them: the initialisation sequence (ICW1 on the command port, then
/// ICW2 vector base, ICW3 cascade, ICW4 when ICW1 asked for it, on the data port), OCW1 (the mask, read back on the
/// data port), OCW2 (EOIs, accepted) and OCW3 (which of IRR and ISR the command port reads). It never delivers an
/// interrupt: with a split irqchip every line goes to the userspace IOAPIC, and IRR/ISR read 0. Guests that mask the
/// PICs before using the IOAPIC (kvm-unit-tests, Linux) see the registers they expect.
/// </summary>
public sealed class I8259Model
{
    private readonly byte[] _mask = [0xff, 0xff];
    private readonly byte[] _vector = new byte[2];
    private readonly byte[] _step = new byte[2]; // 0: operational; 2-4: the ICW expected next
    private readonly bool[] _icw4 = new bool[2];
    private readonly bool[] _readIsr = new bool[2];

    private static int Chip(ushort port) => port >= 0xa0 ? 1 : 0;

    public byte Mask(int chip) => _mask[chip];
    public byte VectorBase(int chip) => _vector[chip];

    public byte Read(ushort port)
    {
        var c = Chip(port);
        return (port & 1) == 1 ? _mask[c] : (byte)0; // IRR or ISR: nothing is ever pending or in service
    }

    public void Write(ushort port, byte value)
    {
        var c = Chip(port);
        if ((port & 1) == 0)
        {
            if ((value & 0x10) != 0) // ICW1: restart initialisation
            {
                _step[c] = 2;
                _icw4[c] = (value & 1) != 0;
                _mask[c] = 0;
            }
            else if ((value & 0x18) == 0x08 && (value & 2) != 0) _readIsr[c] = (value & 1) != 0; // OCW3 read register
            return; // OCW2 (EOI, priority): nothing is in service
        }
        switch (_step[c])
        {
            case 2: _vector[c] = (byte)(value & 0xf8); _step[c] = 3; break;
            case 3: _step[c] = _icw4[c] ? (byte)4 : (byte)0; break;
            case 4: _step[c] = 0; break;
            default: _mask[c] = value; break;
        }
    }

    public I8259State Save() => new(_mask.ToArray(), _vector.ToArray(), _step.ToArray(), _icw4.ToArray(), _readIsr.ToArray());

    public void Restore(I8259State s)
    {
        if (s.Masks.Length != 2 || s.Vectors.Length != 2 || s.InitStep.Length != 2 || s.ExpectIcw4.Length != 2 || s.ReadIsr.Length != 2)
            throw new KvmActors.Sdk.DeviceStateException("i8259 state: two controllers expected");
        s.Masks.CopyTo(_mask, 0); s.Vectors.CopyTo(_vector, 0); s.InitStep.CopyTo(_step, 0); s.ExpectIcw4.CopyTo(_icw4, 0); s.ReadIsr.CopyTo(_readIsr, 0);
    }
}

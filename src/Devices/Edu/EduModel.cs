using KvmActors.Sdk;

namespace KvmActors.Devices.Edu;

/// <summary>What the edu model does outside itself: bus-master DMA (bus addresses) and its interrupt.</summary>
public interface IEduBus
{
    bool DmaRead(ulong busAddress, Span<byte> into);
    bool DmaWrite(ulong busAddress, ReadOnlySpan<byte> from);
    /// <summary>Signal: MSI when the guest enabled it, else assert INTx.</summary>
    void RaiseInterrupt();
    /// <summary>Deassert INTx (interrupt status became 0).</summary>
    void LowerInterrupt();
    /// <summary>Whether the guest enabled MSI (an MSI is an edge: nothing to lower).</summary>
    bool MsiEnabled { get; }
}

/// <summary>An <see cref="EduModel"/>'s state.</summary>
public sealed record EduState(uint Alive, uint Factorial, uint Status, uint IrqStatus, ulong DmaSource, ulong DmaDestination,
    ulong DmaCount, ulong DmaCommand, byte[] Buffer);

/// <summary>
/// QEMU's educational PCI device (<c>-device edu</c>, 1234:11e8 revision 0x10; QEMU's docs/specs/edu.rst): BAR 0 is
/// 1 MiB of registers; INTx pin A and an MSI capability.
/// </summary>
/// <remarks>
/// <para>Registers (4-byte accesses below 0x80, 4 or 8 at and above; other widths read all ones and are dropped):
/// 0x00 identification 0x010000ed (version 1.0); 0x04 liveness (reads the complement of what was written); 0x08
/// factorial (a write computes n! (mod 2^32) into it; here at once, so status bit 0 never reads as busy); 0x20 status
/// (bit 0 computing, read-only; bit 7: raise interrupt 0x1 when a factorial is done); 0x24 interrupt status; 0x60
/// raise (ORs the value into the interrupt status and, if that is not 0, interrupts); 0x64 acknowledge (clears those
/// bits; at 0 INTx drops); 0x80 DMA source, 0x88 destination, 0x90 count, 0x98 command (bit 0 start, cleared when
/// done; bit 1 direction: 0 RAM → device, 1 device → RAM; bit 2 interrupt 0x100 when done).</para>
/// <para>DMA: the device's side is its 4 KiB buffer at device address 0x40000; the other is a bus address (through the
/// IOMMU when the VM has one). It runs at once when started (QEMU delays it by a timer; software polls bit 0 either
/// way). A transfer whose device side falls outside the buffer is refused (QEMU aborts the VM there): the command
/// completes with nothing copied. A transfer the IOMMU blocks stops there (the IOMMU records the fault).</para>
/// </remarks>
public sealed class EduModel
{
    public const ushort Vendor = 0x1234, DeviceId = 0x11e8;
    public const byte Revision = 0x10;
    public const ulong BarSize = 1 << 20, BufferAddress = 0x40000, BufferSize = 4096;
    public const uint Identification = 0x010000ed;
    public const uint StatusComputing = 0x01, StatusIrqFactorial = 0x80;
    public const ulong CmdStart = 1, CmdFromDevice = 2, CmdIrq = 4;
    public const uint IrqFactorial = 0x1, IrqDma = 0x100;

    private readonly IEduBus _bus;
    private readonly byte[] _buffer = new byte[BufferSize];
    private uint _alive, _factorial, _status, _irqStatus;
    private ulong _src, _dst, _count, _cmd;

    public EduModel(IEduBus bus) => _bus = bus;

    public static PciDeclaration Declaration => new(Vendor, DeviceId, 0x00ff00, [new PciBar(0, BarSize, PciBarKind.Mem32)], InterruptPin: 1)
    {
        Revision = Revision,
        Msi = true,
    };

    public uint InterruptStatus => _irqStatus;
    public ReadOnlySpan<byte> Buffer => _buffer;

    public ulong Read(ulong offset, int size)
    {
        var none = size >= 8 ? ulong.MaxValue : (1UL << (size * 8)) - 1;
        if (offset < 0x80 ? size != 4 : size is not (4 or 8)) return none;
        return offset switch
        {
            0x00 => Identification,
            0x04 => ~_alive,
            0x08 => _factorial,
            0x20 => _status,
            0x24 => _irqStatus,
            0x80 => _src,
            0x88 => _dst,
            0x90 => _count,
            0x98 => _cmd,
            _ => none,
        } & none;
    }

    public void Write(ulong offset, int size, ulong value)
    {
        if (offset < 0x80 ? size != 4 : size is not (4 or 8)) return;
        var v = (uint)value;
        switch (offset)
        {
            case 0x04: _alive = v; break;
            case 0x08:
                if ((_status & StatusComputing) != 0) break;
                uint f = 1;
                for (var i = v; i > 0; i--) f = unchecked(f * i);
                _factorial = f;
                if ((_status & StatusIrqFactorial) != 0) Raise(IrqFactorial);
                break;
            case 0x20: _status = (_status & StatusComputing) | (v & StatusIrqFactorial); break;
            case 0x60: Raise(v); break;
            case 0x64:
                _irqStatus &= ~v;
                if (_irqStatus == 0 && !_bus.MsiEnabled) _bus.LowerInterrupt();
                break;
            case 0x80: _src = value; break;
            case 0x88: _dst = value; break;
            case 0x90: _count = value; break;
            case 0x98:
                if ((_cmd & CmdStart) != 0) break; // busy (never, here: a transfer ends within the write)
                _cmd = value;
                if ((_cmd & CmdStart) != 0) RunDma();
                break;
        }
    }

    private void Raise(uint bits)
    {
        _irqStatus |= bits;
        if (_irqStatus != 0) _bus.RaiseInterrupt();
    }

    private void RunDma()
    {
        var fromDevice = (_cmd & CmdFromDevice) != 0;
        var deviceSide = fromDevice ? _src : _dst;
        var busSide = fromDevice ? _dst : _src;
        if (deviceSide >= BufferAddress && _count <= BufferSize && deviceSide - BufferAddress <= BufferSize - _count)
        {
            var window = _buffer.AsSpan((int)(deviceSide - BufferAddress), (int)_count);
            if (fromDevice) _bus.DmaWrite(busSide, window);
            else _bus.DmaRead(busSide, window);
        }
        _cmd &= ~CmdStart;
        if ((_cmd & CmdIrq) != 0) Raise(IrqDma);
    }

    public EduState Save() => new(_alive, _factorial, _status, _irqStatus, _src, _dst, _count, _cmd, _buffer.ToArray());

    public void Restore(EduState s)
    {
        if (s.Buffer.Length != (int)BufferSize) throw new DeviceStateException($"edu state: a buffer of {s.Buffer.Length} bytes, not {BufferSize}");
        (_alive, _factorial, _status, _irqStatus) = (s.Alive, s.Factorial, s.Status & (StatusComputing | StatusIrqFactorial), s.IrqStatus);
        (_src, _dst, _count, _cmd) = (s.DmaSource, s.DmaDestination, s.DmaCount, s.DmaCommand & ~CmdStart);
        s.Buffer.CopyTo(_buffer, 0);
    }
}

using KvmActors.Devices.Edu;
using Xunit;

namespace KvmActors.Tests.Devices;

/// <summary>QEMU's edu device: identification, liveness, factorial, interrupts and DMA, as kvm-unit-tests' lib/pci-edu.c drives it.</summary>
public sealed class EduModelTests : IEduBus
{
    private readonly FakePhysicalMemory _mem = new(0x10000);
    private readonly EduModel _edu;
    private int _raised, _lowered;
    public bool MsiEnabled { get; set; }
    public ulong? Blocked { get; set; }

    public EduModelTests() => _edu = new EduModel(this);

    bool IEduBus.DmaRead(ulong busAddress, Span<byte> into)
    {
        if (Blocked == busAddress) { into.Fill(0xff); return false; }
        _mem.Read(busAddress, into);
        return true;
    }

    bool IEduBus.DmaWrite(ulong busAddress, ReadOnlySpan<byte> from)
    {
        if (Blocked == busAddress) return false;
        _mem.Write(busAddress, from);
        return true;
    }

    void IEduBus.RaiseInterrupt() => _raised++;
    void IEduBus.LowerInterrupt() => _lowered++;

    [Fact]
    public void Identification_liveness_and_factorial_answer_as_the_spec_says_and_odd_widths_are_refused()
    {
        Assert.Equal(0x010000edul, _edu.Read(0, 4));
        _edu.Write(4, 4, 0x1234);
        Assert.Equal(~0x1234u, (uint)_edu.Read(4, 4));
        _edu.Write(8, 4, 10);
        Assert.Equal(3628800ul, _edu.Read(8, 4));
        Assert.Equal(0ul, _edu.Read(0x20, 4) & EduModel.StatusComputing);
        Assert.Equal(0xfful, _edu.Read(0, 1)); // below 0x80 only 4-byte accesses
        Assert.Equal((ushort)0x11e8, EduModel.Declaration.DeviceId);
        Assert.True(EduModel.Declaration.Msi);
        Assert.Equal((byte)0x10, EduModel.Declaration.Revision);
    }

    [Fact]
    public void Raise_ors_into_the_status_and_interrupts_and_ack_lowers_intx_when_the_status_is_clear()
    {
        _edu.Write(0x60, 4, 1);
        _edu.Write(0x60, 4, 4);
        Assert.Equal(5ul, _edu.Read(0x24, 4));
        Assert.Equal(2, _raised);
        _edu.Write(0x64, 4, 1);
        Assert.Equal(0, _lowered);
        _edu.Write(0x64, 4, 4);
        Assert.Equal(1, _lowered);
        _edu.Write(0x60, 4, 0); // raising nothing interrupts nobody
        Assert.Equal(2, _raised);
        _edu.Write(0x20, 4, EduModel.StatusIrqFactorial);
        _edu.Write(8, 4, 3);
        Assert.Equal(EduModel.IrqFactorial, _edu.InterruptStatus);
        Assert.Equal(3, _raised);
    }

    [Fact]
    public void Dma_copies_between_a_bus_address_and_the_buffer_at_0x40000_and_can_interrupt_when_done()
    {
        BitConverter.TryWriteBytes(_mem.Bytes.AsSpan(0x3000), 0x12345678u);
        // lib/pci-edu.c's edu_dma(dev, 0x3000, 4, 0, false), then back to 0x3004 with an interrupt.
        _edu.Write(0x80, 8, 0x3000);
        _edu.Write(0x88, 8, EduModel.BufferAddress);
        _edu.Write(0x90, 8, 4);
        _edu.Write(0x98, 4, EduModel.CmdStart);
        Assert.Equal(0ul, _edu.Read(0x98, 4) & EduModel.CmdStart);
        Assert.Equal(0x12345678u, BitConverter.ToUInt32(_edu.Buffer));
        _edu.Write(0x80, 8, EduModel.BufferAddress);
        _edu.Write(0x88, 8, 0x3004);
        _edu.Write(0x98, 4, EduModel.CmdStart | EduModel.CmdFromDevice | EduModel.CmdIrq);
        Assert.Equal(0x12345678u, _mem.D(0x3004));
        Assert.Equal(EduModel.IrqDma, _edu.InterruptStatus);
        Assert.Equal(1, _raised);
    }

    [Fact]
    public void A_transfer_outside_the_buffer_copies_nothing_and_completes()
    {
        _edu.Write(0x80, 8, EduModel.BufferAddress + 4090);
        _edu.Write(0x88, 8, 0x100);
        _edu.Write(0x90, 8, 16);
        _mem.Bytes[0x100] = 0x5a;
        _edu.Write(0x98, 4, EduModel.CmdStart | EduModel.CmdFromDevice);
        Assert.Equal(0x5a, _mem.Bytes[0x100]);
        Assert.Equal(0ul, _edu.Read(0x98, 4) & EduModel.CmdStart);
    }
}

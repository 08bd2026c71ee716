using KvmActors.Devices.I8259;
using Xunit;

namespace KvmActors.Tests.Devices;

/// <summary>The split irqchip's PICs: the initialisation words and masks guests write, read back; nothing pending.</summary>
public sealed class I8259ModelTests
{
    [Fact]
    public void The_init_sequence_sets_the_vector_base_and_ocw1_the_mask_which_reads_back()
    {
        var pic = new I8259Model();
        foreach (var (port, value) in new (ushort, byte)[] { (0x20, 0x11), (0x21, 0x20), (0x21, 0x04), (0x21, 0x01), (0xa0, 0x11), (0xa1, 0x28), (0xa1, 0x02), (0xa1, 0x01) })
            pic.Write(port, value);
        Assert.Equal(0x20, pic.VectorBase(0));
        Assert.Equal(0x28, pic.VectorBase(1));
        pic.Write(0x21, 0xfb);
        pic.Write(0xa1, 0xff);
        Assert.Equal(0xfb, pic.Read(0x21));
        Assert.Equal(0xff, pic.Read(0xa1));
        pic.Write(0x20, 0x0b); // OCW3: read ISR
        Assert.Equal(0, pic.Read(0x20));
    }
}

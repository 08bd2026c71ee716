using Akka.Actor;
using Akka.Configuration;
using Akka.TestKit;
using Akka.TestKit.Xunit2;
using KvmActors.Devices.PcTestdev;
using KvmActors.Sdk;
using Xunit;

namespace KvmActors.Tests.Qemu;

/// <summary>pc-testdev's register model and actor: what kvm-unit-tests' emulator, realmode, eventinj and ioapic tests rely on.</summary>
public sealed class PcTestdevTests : TestKit
{
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(4)]
    public void Data_port_reads_back_what_was_written_at_each_width(int size)
    {
        var m = new PcTestdevModel();
        var value = 0x12345678UL & ((1UL << (size * 8)) - 1);
        m.WritePort(0xe0, size, value);
        Assert.Equal(value, m.ReadPort(0xe0, size));
    }

    [Fact]
    public void Data_port_bytes_merge_into_one_register_seen_at_every_offset_and_through_the_byte_alias()
    {
        var m = new PcTestdevModel();
        m.WritePort(0xe0, 4, 0x11223344);
        m.WritePort(0xe2, 1, 0xaa);             // byte 2 only
        Assert.Equal(0x11aa3344UL, m.ReadPort(0xe0, 4));
        Assert.Equal(0x11aaUL, m.ReadPort(0xe2, 2));
        Assert.Equal(0x11UL, m.ReadPort(0xe3, 4)); // past 0xe3 there is nothing: only byte 3
        Assert.Equal(0x11aa3344UL, m.ReadPort(0xe8, 4));
        m.WritePort(0xe9, 1, 0x55);
        Assert.Equal(0x11aa5544UL, m.Data);
    }

    [Fact]
    public void String_io_leaves_the_last_byte_written_in_the_register()
    {
        // emulator.c test_stringio: rep outsb of "abcdefghijklmnop" to 0xe0, then inb 0xe0 == 'p'.
        var m = new PcTestdevModel();
        foreach (var c in "abcdefghijklmnop") m.WritePort(0xe0, 1, c);
        Assert.Equal((ulong)'p', m.ReadPort(0xe0, 1));
    }

    [Fact]
    public void Irq_ports_name_lines_0_to_23_and_read_as_zero()
    {
        var m = new PcTestdevModel();
        Assert.Equal((0, true), m.WritePort(0x2000, 1, 1));
        Assert.Equal((14, false), m.WritePort(0x200e, 1, 0));
        Assert.Equal((23, true), m.WritePort(0x2017, 1, 0x80));
        Assert.Null(m.WritePort(0x2018, 1, 1));
        Assert.Equal(0UL, m.ReadPort(0x2005, 1));
    }

    [Fact]
    public void Flush_page_writes_are_taken_and_change_nothing_else()
    {
        var m = new PcTestdevModel();
        m.WritePort(0xe0, 4, 0xdeadbeef);
        Assert.Null(m.WritePort(0xe4, 4, 0x7000));
        Assert.Equal(1, m.Flushes);
        Assert.Equal(0x7000u, m.LastFlushAddress);
        Assert.Equal(0xdeadbeefUL, m.ReadPort(0xe0, 4));
        Assert.Equal(0UL, m.ReadPort(0xe4, 4));
    }

    [Fact]
    public void Test_memory_behaves_as_64_KiB_of_little_endian_ram()
    {
        var m = new PcTestdevModel();
        m.WriteIomem(0, 8, 0x0077665544332211);
        Assert.Equal(0x44332211UL, m.ReadIomem(0, 4));
        Assert.Equal(0x66UL, m.ReadIomem(5, 1));
        // emulator.c cross-page: bytes 4095 and 4096 are independent bytes of one memory.
        m.WriteIomem(4095, 1, 0x99);
        m.WriteIomem(4096, 1, 0x77);
        Assert.Equal(0x7799UL, m.ReadIomem(4095, 2));
        m.WriteIomem(PcTestdevModel.IomemLength - 1, 1, 0xab);
        Assert.Equal(0xabUL, m.ReadIomem(PcTestdevModel.IomemLength - 1, 1));
        Assert.Equal(0xabUL, m.ReadIomem(PcTestdevModel.IomemLength - 1, 4)); // nothing past the end
    }

    private DeviceContext Context(IActorRef vm, Action<int, bool>? drive) => new()
    {
        Name = "testdev",
        Type = "pc-testdev",
        Options = new DeviceOptions(ConfigurationFactory.Empty, "guest.devices.testdev.options", "test.conf", Path.GetTempPath()),
        Ports = [new PortRange(0xe0, 0xeb), new PortRange(0x2000, 0x2017)],
        Mmio = [new MmioRange(0xff000000, 0xff00ffff)],
        Vm = vm,
        Machine = new MachineInfo(1, 16UL << 20, []),
        DriveIrqLine = drive,
    };

    [Fact]
    public void Actor_drives_the_irq_line_directly_when_the_vm_has_an_irqchip()
    {
        var vm = CreateTestProbe();
        var driven = new System.Collections.Concurrent.ConcurrentQueue<(int, bool)>();
        var ctx = Context(vm.Ref, (l, v) => driven.Enqueue((l, v)));
        var dev = Sys.ActorOf(Props.Create(() => new PcTestdevDevice(ctx)));
        dev.Tell(new PortWrite(0x200e, 0x0e, 1, 1, 0));
        dev.Tell(new PortWrite(0x200e, 0x0e, 1, 0, 0));
        dev.Tell(new PortRead(0xe0, 0, 1, 0, 7)); // a round trip: both writes were handled before it
        ExpectMsg<ReadCompleted>();
        Assert.Equal([(14, true), (14, false)], driven.ToArray());
        vm.ExpectNoMsg(TimeSpan.FromMilliseconds(50));
    }

    [Fact]
    public void Actor_tells_the_vm_without_a_direct_line_and_serves_the_memory_page()
    {
        var vm = CreateTestProbe();
        var ctx = Context(vm.Ref, null);
        var dev = Sys.ActorOf(Props.Create(() => new PcTestdevDevice(ctx)));
        dev.Tell(new PortWrite(0x2003, 3, 1, 1, 0));
        Assert.Equal(new SetIrqLine(3, true, "testdev"), vm.ExpectMsg<SetIrqLine>());
        dev.Tell(new MmioWrite(0xff000010, 0x10, 4, 0xcafef00d, 0));
        dev.Tell(new MmioRead(0xff000012, 0x12, 2, 0, 9));
        Assert.Equal(new ReadCompleted(9, 0xcafe), ExpectMsg<ReadCompleted>());
    }
}

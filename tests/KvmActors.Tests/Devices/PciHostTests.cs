using Akka.Actor;
using Akka.Configuration;
using Akka.TestKit;
using Akka.TestKit.Xunit2;
using KvmActors.Devices.PciHost;
using KvmActors.Devices.PciTestdev;
using KvmActors.Sdk;
using Xunit;

namespace KvmActors.Tests.Devices;

/// <summary>The PCI host bridge: mechanism #1, the configuration space of its functions, BAR sizing and moves.</summary>
public sealed class PciHostTests : TestKit
{
    private const ushort First = 0xcf8;
    private readonly TestProbe _vm;
    private long _seq;

    public PciHostTests() => _vm = CreateTestProbe("vm");

    private static readonly PciDeclaration ThreeKinds = new(0x1234, 0x5678, 0x020000,
        [new PciBar(0, 0x1000, PciBarKind.Mem32), new PciBar(1, 0x20, PciBarKind.Io), new PciBar(2, 0x4000, PciBarKind.Mem64, Prefetchable: true)],
        InterruptPin: 1);

    private static PciFunction Function(PciDeclaration? d = null) =>
        new(1, "dev", d ?? ThreeKinds, [0xc000_0000, 0xc000, 0xc000_4000, 0, 0, 0], 10);

    private static PciHostModel Model(params PciFunction[] functions) => new(functions);

    private static uint Cfg(int device, int register, int function = 0, int bus = 0) =>
        0x8000_0000u | (uint)(bus << 16) | (uint)(device << 11) | (uint)(function << 8) | (uint)register;

    private static uint ReadConfig(PciHostModel m, uint address, int size = 4, int k = 0)
    {
        m.Write(0, 4, address);
        return (uint)m.Read((ulong)(4 + k), size);
    }

    private static (string Device, IReadOnlyList<PciBarMapping> Bars)? WriteConfig(PciHostModel m, uint address, uint value, int size = 4, int k = 0)
    {
        m.Write(0, 4, address);
        return m.Write((ulong)(4 + k), size, value);
    }

    [Fact]
    public void Device_0_is_the_host_bridge_and_slot_1_the_declared_function()
    {
        var m = Model(Function());
        Assert.Equal(0x1237_8086u, ReadConfig(m, Cfg(0, 0)));
        Assert.Equal(0x0600_0002u, ReadConfig(m, Cfg(0, 8)));    // class 06 00 00, revision 2
        Assert.Equal(0x5678_1234u, ReadConfig(m, Cfg(1, 0)));
        Assert.Equal(0x0200_0000u, ReadConfig(m, Cfg(1, 8)));
        Assert.Equal(0u, ReadConfig(m, Cfg(1, 0x0c)) >> 16 & 0xff); // header type 0
        Assert.Equal(0u, ReadConfig(m, Cfg(1, 0x34)));              // no capabilities
        Assert.Equal(0u, ReadConfig(m, Cfg(1, 4)) >> 16 & 0x10);    // status: no capability list
        Assert.Equal(0x010au, ReadConfig(m, Cfg(1, 0x3c)) & 0xffff); // pin INTA#, line 10
    }

    [Theory]
    [InlineData(2, 0, 0)]   // an empty slot
    [InlineData(1, 1, 0)]   // function 1 of a single-function device
    [InlineData(1, 0, 1)]   // bus 1
    public void Nonexistent_functions_read_all_ones_and_ignore_writes(int device, int function, int bus)
    {
        var m = Model(Function());
        Assert.Equal(0xffff_ffffu, ReadConfig(m, Cfg(device, 0, function, bus)));
        Assert.Equal(0xffffu, ReadConfig(m, Cfg(device, 0, function, bus), 2, 2));
        Assert.Equal(0xffu, ReadConfig(m, Cfg(device, 0, function, bus), 1, 3));
        Assert.Null(WriteConfig(m, Cfg(device, 0x10, function, bus), 0));
        Assert.Equal(0xc000_0000u, ReadConfig(m, Cfg(1, 0x10)));
    }

    [Fact]
    public void Without_the_enable_bit_data_reads_all_ones()
    {
        var m = Model(Function());
        Assert.Equal(0xffff_ffffu, ReadConfig(m, Cfg(0, 0) & 0x7fff_ffff));
    }

    [Fact]
    public void Byte_and_word_data_accesses_reach_the_bytes_of_the_selected_dword()
    {
        var m = Model(Function());
        Assert.Equal(0x34u, ReadConfig(m, Cfg(1, 0), 1, 0));
        Assert.Equal(0x12u, ReadConfig(m, Cfg(1, 0), 1, 1));
        Assert.Equal(0x5678u, ReadConfig(m, Cfg(1, 0), 2, 2));
        WriteConfig(m, Cfg(1, 0x3c), 0x0b, 1);
        Assert.Equal(0x010bu, ReadConfig(m, Cfg(1, 0x3c)) & 0xffff);
        WriteConfig(m, Cfg(1, 0x3c), 0x04, 1, 1); // the pin is read-only
        Assert.Equal(0x010bu, ReadConfig(m, Cfg(1, 0x3c)) & 0xffff);
    }

    [Fact]
    public void The_low_bits_of_the_address_register_pick_the_byte_as_in_qemu()
    {
        // kvm-unit-tests' pci_config_readw(dev, PCI_DEVICE_ID): CONFIG_ADDRESS with register 2, then a word from 0xcfc.
        var m = Model(Function());
        Assert.Equal(0x5678u, ReadConfig(m, Cfg(1, 2), 2));
        Assert.Equal(0x12u, ReadConfig(m, Cfg(1, 1), 1));
        WriteConfig(m, Cfg(1, 0x3d), 0x0b, 1, 0); // register 0x3d is the read-only pin...
        WriteConfig(m, Cfg(1, 0x3c), 0x0c, 1, 0); // ...0x3c the line
        Assert.Equal(0x010cu, ReadConfig(m, Cfg(1, 0x3c)) & 0xffff);
    }

    [Theory]
    [InlineData(0x10, 0xffff_f000u)] // 4 KiB, 32-bit memory
    [InlineData(0x14, 0xffff_ffe1u)] // 32 ports, bit 0: I/O
    [InlineData(0x18, 0xffff_c00cu)] // 16 KiB, 64-bit (bits 2:1 = 2), prefetchable (bit 3)
    [InlineData(0x1c, 0xffff_ffffu)] // its upper half
    [InlineData(0x20, 0u)]           // no BAR 4: nothing writable
    [InlineData(0x30, 0u)]           // no expansion ROM
    public void Writing_all_ones_to_a_bar_reads_back_its_size_mask(int register, uint expected)
    {
        var m = Model(Function());
        WriteConfig(m, Cfg(1, register), 0xffff_ffff);
        Assert.Equal(expected, ReadConfig(m, Cfg(1, register)));
    }

    [Fact]
    public void Sizing_leaves_no_mapping_and_restoring_the_bar_maps_it_back()
    {
        var m = Model(Function());
        var sized = WriteConfig(m, Cfg(1, 0x10), 0xffff_ffff);
        Assert.Equal("dev", sized!.Value.Device);
        Assert.DoesNotContain(sized.Value.Bars, b => b.Bar == 0); // 0xfffff000 + 4 KiB runs to 4 GiB: not decoded
        var back = WriteConfig(m, Cfg(1, 0x10), 0xc000_0000);
        Assert.Contains(new PciBarMapping(0, PciBarKind.Mem32, 0xc000_0000, 0x1000), back!.Value.Bars);
    }

    [Fact]
    public void Moving_a_bar_reports_the_new_mappings_of_every_decoded_bar()
    {
        var m = Model(Function());
        var moved = WriteConfig(m, Cfg(1, 0x14), 0xd000);
        Assert.Equal(
            [
                new PciBarMapping(0, PciBarKind.Mem32, 0xc000_0000, 0x1000),
                new PciBarMapping(1, PciBarKind.Io, 0xd000, 0x20),
                new PciBarMapping(2, PciBarKind.Mem64, 0xc000_4000, 0x4000),
            ],
            moved!.Value.Bars);
        WriteConfig(m, Cfg(1, 0x1c), 0x1); // the 64-bit BAR's upper half: above 4 GiB
        Assert.Contains(new PciBarMapping(2, PciBarKind.Mem64, 0x1_c000_4000, 0x4000), m.Function(1)!.Mappings());
        Assert.Null(WriteConfig(m, Cfg(1, 0x14), 0xd000)); // the same place again: nothing changed
        Assert.Null(WriteConfig(m, Cfg(1, 0x0c), 0x10, 1)); // cache line size: no mapping changes
    }

    [Fact]
    public void Command_bits_turn_io_and_memory_decoding_off_and_on()
    {
        var m = Model(Function());
        Assert.Equal(0x3u, ReadConfig(m, Cfg(1, 4)) & 0xffff); // firmware turned both on
        var noMem = WriteConfig(m, Cfg(1, 4), 0x1, 2);
        Assert.Equal([new PciBarMapping(1, PciBarKind.Io, 0xc000, 0x20)], noMem!.Value.Bars);
        var none = WriteConfig(m, Cfg(1, 4), 0x0, 2);
        Assert.Empty(none!.Value.Bars);
        WriteConfig(m, Cfg(1, 4), 0xffff, 2);
        Assert.Equal(0x0507u, ReadConfig(m, Cfg(1, 4)) & 0xffff); // only I/O, memory, master, SERR#, INTx disable stick
        Assert.Equal(3, m.Function(1)!.Mappings().Count);
    }

    [Fact]
    public void Identity_registers_are_read_only()
    {
        var m = Model(Function());
        WriteConfig(m, Cfg(1, 0), 0);
        WriteConfig(m, Cfg(1, 8), 0);
        Assert.Equal(0x5678_1234u, ReadConfig(m, Cfg(1, 0)));
        Assert.Equal(0x0200_0000u, ReadConfig(m, Cfg(1, 8)));
    }

    [Fact]
    public void A_restored_bridge_has_the_moved_bars_but_cannot_be_given_other_ids()
    {
        var m = Model(Function());
        WriteConfig(m, Cfg(1, 0x10), 0xd000_0000);
        var state = m.Save();
        state.Functions[1][0] = 0xee; // a state file's vendor ID is not taken
        var restored = Model(Function());
        restored.Restore(state);
        Assert.Equal(0xd000_0000u, ReadConfig(restored, Cfg(1, 0x10)));
        Assert.Equal(0x5678_1234u, ReadConfig(restored, Cfg(1, 0)));
        Assert.Throws<DeviceStateException>(() => Model().Restore(state)); // slot 1 missing here
    }

    [Fact]
    public void Declaration_mistakes_are_named()
    {
        var bad = new PciDeclaration(0xffff, 1, 0, [new PciBar(5, 0x1000, PciBarKind.Mem64), new PciBar(0, 3, PciBarKind.Io, true)], 7);
        var problems = bad.Problems();
        Assert.Contains(problems, p => p.Contains("0xffff"));
        Assert.Contains(problems, p => p.Contains("BAR 5"));
        Assert.Contains(problems, p => p.Contains("size 0x3"));
        Assert.Contains(problems, p => p.Contains("prefetchable"));
        Assert.Contains(problems, p => p.Contains("pin 7"));
        Assert.Empty(ThreeKinds.Problems());
    }

    // ---- the actor: mechanism #1 on its port range, BAR moves told to the VM with the writer's answer ----

    private IActorRef Bridge(params PciFunction[] functions)
    {
        var ctx = new DeviceContext
        {
            Name = "pci", Type = "pci-host",
            Options = new DeviceOptions(ConfigurationFactory.ParseString(""), "guest.devices.pci.options", "test.conf", Path.GetTempPath()),
            Ports = [new PortRange(First, 0xcff)], Vm = _vm.Ref, Machine = new MachineInfo(1, 16UL << 20, []),
            PciBus = functions,
        };
        return Sys.ActorOf(Props.Create(() => new PciHostDevice(ctx)));
    }

    private void Out(IActorRef device, ushort port, int size, uint value, long seq = 0) =>
        device.Tell(new PortWrite(port, (ushort)(port - First), size, value, 0, seq));

    private ulong In(IActorRef device, ushort port, int size)
    {
        var seq = ++_seq;
        device.Tell(new PortRead(port, (ushort)(port - First), size, 0, seq));
        var r = ExpectMsg<ReadCompleted>();
        Assert.Equal(seq, r.Seq);
        return r.Value;
    }

    [Fact]
    public void Address_register_round_trips_and_narrow_accesses_miss_it()
    {
        var device = Bridge();
        Out(device, 0xcf8, 4, 0x8000_f80c);
        Assert.Equal(0x8000_f80cul, In(device, 0xcf8, 4));
        // The mechanism #2 probe: byte writes of 0 to 0xcf8 and 0xcfa, read back: they miss the register.
        Out(device, 0xcf8, 1, 0x00);
        Out(device, 0xcfa, 1, 0x00);
        Assert.Equal(0xfful, In(device, 0xcf8, 1));
        Assert.Equal(0xfffful, In(device, 0xcf8, 2));
        Assert.Equal(0x8000_f80cul, In(device, 0xcf8, 4));
    }

    [Fact]
    public void An_awaited_write_is_answered_at_once_unless_it_moved_a_bar_and_then_the_vm_gets_the_answer()
    {
        var device = Bridge(Function());
        Out(device, 0xcf8, 4, Cfg(1, 0x3c), seq: 41);
        Assert.Equal(41, ExpectMsg<ReadCompleted>().Seq); // nothing moved: the bridge answers itself
        Out(device, 0xcf8, 4, Cfg(1, 0x14), seq: 42);
        ExpectMsg<ReadCompleted>();
        Out(device, 0xcfc, 4, 0xe000, seq: 43);
        var moved = _vm.ExpectMsg<PciBarsMapped>();
        Assert.Equal("dev", moved.DeviceName);
        Assert.Contains(new PciBarMapping(1, PciBarKind.Io, 0xe000, 0x20), moved.Bars);
        Assert.Equal(43, moved.Answer!.Seq);
        Assert.Equal(TestActor, moved.Answer.Vcpu);
        ExpectNoMsg(TimeSpan.FromMilliseconds(100)); // the VM answers, once the routing follows
    }
}

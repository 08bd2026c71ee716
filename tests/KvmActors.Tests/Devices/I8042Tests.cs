using Akka.Actor;
using Akka.Configuration;
using Akka.TestKit;
using Akka.TestKit.Xunit2;
using KvmActors.Devices.I8042;
using KvmActors.Runtime.Bus;
using KvmActors.Sdk;
using KvmActors.Runtime.Config;
using KvmActors.Runtime.Devices;
using KvmActors.Runtime.Vm;
using Xunit;

namespace KvmActors.Tests.Devices;

public sealed class I8042Tests : TestKit
{
    private const ushort DataPort = 0x60;
    private const ushort CommandPort = 0x64;
    private readonly TestProbe _vm;
    private long _seq;

    public I8042Tests() => _vm = CreateTestProbe("vm");

    private DeviceContext Context(string options = "", IReadOnlyList<PortRange>? ports = null) => new()
    {
        Name = "kbc",
        Type = "i8042",
        Options = new DeviceOptions(ConfigurationFactory.ParseString(options), "guest.devices.kbc.options", "test.conf", Path.GetTempPath()),
        Ports = ports ?? [new PortRange(DataPort, CommandPort)],
        Vm = _vm.Ref,
        Machine = new MachineInfo(1, 16UL << 20, []),
    };

    private IActorRef Device(IReadOnlyList<PortRange>? ports = null)
    {
        var ctx = Context(ports: ports);
        return Sys.ActorOf(Props.Create(() => new I8042Device(ctx)));
    }

    // Offsets as the bus computes them for the single range 0x60-0x64.
    private static void Out(IActorRef device, ushort port, byte value) =>
        device.Tell(new PortWrite(port, (ushort)(port - DataPort), 1, value, 0));

    private ulong In(IActorRef device, ushort port, int size = 1)
    {
        var seq = ++_seq;
        device.Tell(new PortRead(port, (ushort)(port - DataPort), size, 0, seq));
        var r = ExpectMsg<ReadCompleted>();
        Assert.Equal(seq, r.Seq);
        return r.Value;
    }

    [Fact]
    public void Idle_status_has_buffers_empty_and_system_flag_set()
    {
        var status = In(Device(), CommandPort);

        Assert.Equal(0x14ul, status);
        Assert.Equal(0ul, status & I8042Controller.StatusOutputFull);
        Assert.Equal(0ul, status & I8042Controller.StatusInputFull);
        Assert.NotEqual(0ul, status & I8042Controller.StatusSystemFlag);
    }

    [Fact]
    public void Command_0xfe_ends_the_vm_as_a_reset_request()
    {
        Out(Device(), CommandPort, 0xfe);

        var end = _vm.ExpectMsg<RequestVmEnd>();
        Assert.Equal(VmEndReason.ResetRequested, end.Reason);
        Assert.Contains("0xfe", end.Detail);
    }

    [Fact]
    public void Reset_is_requested_once()
    {
        var device = Device();
        Out(device, CommandPort, 0xfe);
        Out(device, CommandPort, 0xfe);
        In(device, CommandPort);

        _vm.ExpectMsg<RequestVmEnd>();
        _vm.ExpectNoMsg(TimeSpan.Zero);
    }

    [Fact]
    public void Writing_the_output_port_with_bit_0_clear_resets()
    {
        var device = Device();
        Out(device, CommandPort, 0xd1);
        Out(device, DataPort, 0xfe);

        Assert.Equal(VmEndReason.ResetRequested, _vm.ExpectMsg<RequestVmEnd>().Reason);
    }

    [Fact]
    public void Harmless_commands_do_not_reset()
    {
        var device = Device();
        foreach (var c in new byte[] { 0xff, 0xad, 0xae, 0xa7, 0xa8, 0xdd, 0xdf, 0x90, 0xc8 })
            Out(device, CommandPort, c);
        Out(device, CommandPort, 0xd1);
        Out(device, DataPort, 0x03);
        Out(device, DataPort, 0xf4); // a keyboard command: no keyboard, dropped
        In(device, CommandPort);     // fence

        _vm.ExpectNoMsg(TimeSpan.Zero);
    }

    [Fact]
    public void Self_test_replies_0x55_through_the_output_buffer()
    {
        var device = Device();
        Out(device, CommandPort, 0xaa);

        Assert.Equal(0x1dul, In(device, CommandPort)); // output full, system, last write was a command, not inhibited
        Assert.Equal(0x55ul, In(device, DataPort));
        Assert.Equal(0ul, In(device, CommandPort) & I8042Controller.StatusOutputFull);
    }

    [Fact]
    public void Command_byte_can_be_read_and_written()
    {
        var device = Device();
        Out(device, CommandPort, 0x20);
        Assert.Equal((ulong)I8042Controller.DefaultCommandByte, In(device, DataPort));

        Out(device, CommandPort, 0x60);
        Out(device, DataPort, 0x61); // system flag clear
        Out(device, CommandPort, 0x20);
        Assert.Equal(0x61ul, In(device, DataPort));
        Assert.Equal(0ul, In(device, CommandPort) & I8042Controller.StatusSystemFlag);
    }

    [Fact]
    public void Data_read_with_nothing_waiting_returns_the_last_byte()
    {
        var device = Device();
        Assert.Equal(0ul, In(device, DataPort));
        Out(device, CommandPort, 0xab);
        Assert.Equal(0x00ul, In(device, DataPort));
        Out(device, CommandPort, 0xaa);
        Assert.Equal(0x55ul, In(device, DataPort));
        Assert.Equal(0x55ul, In(device, DataPort));
    }

    [Fact]
    public void Ports_between_data_and_command_read_all_ones()
    {
        var device = Device();
        Assert.Equal(0xfful, In(device, 0x61));
        Out(device, 0x61, 0x03);
        Assert.Equal(0x14ul, In(device, CommandPort));
    }

    [Fact]
    public void Two_single_port_ranges_decode_the_same_registers()
    {
        var device = Device([new PortRange(DataPort, DataPort), new PortRange(CommandPort, CommandPort)]);
        // With separate ranges the bus gives offset 0 for both ports.
        device.Tell(new PortWrite(CommandPort, 0, 1, 0xaa, 0));
        device.Tell(new PortRead(CommandPort, 0, 1, 0, 1));
        Assert.Equal(0x1dul, ExpectMsg<ReadCompleted>().Value);
        device.Tell(new PortRead(DataPort, 0, 1, 0, 2));
        Assert.Equal(0x55ul, ExpectMsg<ReadCompleted>().Value);
        device.Tell(new PortWrite(CommandPort, 0, 1, 0xfe, 0));
        Assert.Equal(VmEndReason.ResetRequested, _vm.ExpectMsg<RequestVmEnd>().Reason);
    }

    [Fact]
    public void Model_pulse_commands_reset_when_bit_0_is_clear()
    {
        var c = new I8042Controller();
        Assert.Equal(I8042Effect.ResetPulsed, c.WriteCommand(0xfe));
        Assert.Equal(I8042Effect.ResetPulsed, c.WriteCommand(0xf0));
        Assert.Equal(I8042Effect.None, c.WriteCommand(0xff));
        Assert.Equal(I8042Effect.None, c.WriteCommand(0xf1));
    }

    [Fact]
    public void Model_output_port_and_a20()
    {
        var c = new I8042Controller();
        Assert.True(c.A20Enabled);
        c.WriteCommand(0xdd);
        Assert.False(c.A20Enabled);
        c.WriteCommand(0xd0);
        Assert.Equal(0x01, c.ReadData());
        c.WriteCommand(0xd1);
        Assert.Equal(I8042Effect.None, c.WriteData(0x03));
        Assert.True(c.A20Enabled);
    }

    [Fact]
    public void Model_aux_and_keyboard_buffer_writes_echo_with_the_right_status()
    {
        var c = new I8042Controller();
        c.WriteCommand(0xd3);
        c.WriteData(0x42);
        Assert.NotEqual(0, c.ReadStatus() & I8042Controller.StatusAuxData);
        Assert.Equal(0x42, c.ReadData());
        c.WriteCommand(0xd2);
        c.WriteData(0x1c);
        Assert.Equal(0, c.ReadStatus() & I8042Controller.StatusAuxData);
        Assert.Equal(0x1c, c.ReadData());
    }

    [Fact]
    public void Model_keyboard_bytes_get_no_reply_and_the_queue_is_bounded()
    {
        var c = new I8042Controller();
        c.WriteData(0xff);
        Assert.Equal(0, c.PendingOutput);
        for (var i = 0; i < 100; i++) c.WriteCommand(0xaa);
        Assert.Equal(I8042Controller.MaxPendingOutput, c.PendingOutput);
    }

    [Fact]
    public void Model_enable_disable_commands_edit_the_command_byte()
    {
        var c = new I8042Controller();
        c.WriteCommand(0xad);
        c.WriteCommand(0xa7);
        Assert.Equal(0x44 | 0x10 | 0x20, c.CommandByte);
        c.WriteCommand(0xae);
        c.WriteCommand(0xa8);
        Assert.Equal(0x44, c.CommandByte);
    }

    [Fact]
    public void Unknown_option_is_rejected_naming_the_key()
    {
        var e = Assert.Throws<ConfigException>(() => I8042Device.ValidateOptions(Context("irq = 1").Options));
        Assert.Equal("guest.devices.kbc.options.irq", e.Key);
    }
}

using Akka.Actor;
using Akka.Configuration;
using Akka.Event;
using Akka.TestKit;
using Akka.TestKit.Xunit2;
using KvmActors.Devices.DebugExit;
using KvmActors.Runtime.Bus;
using KvmActors.Sdk;
using KvmActors.Runtime.Config;
using KvmActors.Runtime.Devices;
using KvmActors.Runtime.Vm;
using Xunit;

namespace KvmActors.Tests.Devices;

public sealed class DebugExitTests : TestKit
{
    private const ushort Port = 0xf4;
    private readonly TestProbe _vm;

    public DebugExitTests() => _vm = CreateTestProbe("vm");

    private DeviceContext Context(string options = "") => new()
    {
        Name = "exit",
        Type = "debug-exit",
        Options = new DeviceOptions(ConfigurationFactory.ParseString(options), "guest.devices.exit.options", "test.conf", Path.GetTempPath()),
        Ports = [new PortRange(Port, Port + 3)],
        Vm = _vm.Ref,
        Machine = new MachineInfo(1, 16UL << 20, []),
    };

    private IActorRef Device()
    {
        var ctx = Context();
        return Sys.ActorOf(Props.Create(() => new DebugExitDevice(ctx)));
    }

    [Theory]
    [InlineData(1, 0x00u, 1)]
    [InlineData(1, 0x01u, 3)]
    [InlineData(1, 0x10u, 0x21)]
    [InlineData(1, 0x7fu, 255)]
    [InlineData(2, 0x0002u, 5)]
    [InlineData(4, 0x0000_0003u, 7)]
    public void Write_ends_the_vm_with_status_v_shifted_left_or_one(int size, uint value, int status)
    {
        Device().Tell(new PortWrite(Port, 0, size, value, 0));

        var end = _vm.ExpectMsg<RequestVmEnd>();
        Assert.Equal(VmEndReason.GuestExit, end.Reason);
        Assert.Equal(status, end.ExitStatus);
        Assert.Contains("debug-exit port 0xf4", end.Detail);
    }

    [Theory]
    [InlineData(1, 0x80u, 0x101ul, 1)]
    [InlineData(1, 0xffu, 0x1fful, 0xff)]
    [InlineData(2, 0x1234u, 0x2469ul, 0x69)]
    [InlineData(4, 0xffff_ffffu, 0x1_ffff_ffffUL, 0xff)]
    public void A_status_above_255_is_reported_as_its_low_8_bits_and_described_in_full(int size, uint value, ulong full, int status)
    {
        Device().Tell(new PortWrite(Port, 0, size, value, 0));

        var end = _vm.ExpectMsg<RequestVmEnd>();
        Assert.Equal(status, end.ExitStatus);
        Assert.Contains($"0x{full:x}", end.Detail);
        Assert.Contains("status & 0xff", end.Detail);
    }

    [Fact]
    public void Value_is_masked_to_the_access_width()
    {
        Device().Tell(new PortWrite(Port, 0, 1, 0xab01, 0));
        Assert.Equal(3, _vm.ExpectMsg<RequestVmEnd>().ExitStatus);
    }

    [Fact]
    public void Any_port_of_the_range_works()
    {
        Device().Tell(new PortWrite(Port + 2, 2, 1, 4, 0));
        Assert.Equal(9, _vm.ExpectMsg<RequestVmEnd>().ExitStatus);
    }

    [Fact]
    public void Only_the_first_write_ends_the_vm()
    {
        var device = Device();
        device.Tell(new PortWrite(Port, 0, 1, 2, 0));
        device.Tell(new PortWrite(Port, 0, 1, 3, 1));
        device.Tell(new PortRead(Port, 0, 1, 0, 1)); // a fence: once answered, both writes were handled
        ExpectMsg<ReadCompleted>();

        Assert.Equal(5, _vm.ExpectMsg<RequestVmEnd>().ExitStatus);
        _vm.ExpectNoMsg(TimeSpan.Zero);
    }

    [Theory]
    [InlineData(1, 0xfful)]
    [InlineData(2, 0xfffful)]
    [InlineData(4, 0xffff_fffful)]
    public void Reads_return_all_ones_and_do_not_end_the_vm(int size, ulong expected)
    {
        Device().Tell(new PortRead(Port, 0, size, 0, 42));

        var read = ExpectMsg<ReadCompleted>();
        Assert.Equal(42, read.Seq);
        Assert.Equal(expected, read.Value);
        _vm.ExpectNoMsg(TimeSpan.Zero);
    }

    [Fact]
    public void Status_model_wraps_like_a_shell()
    {
        var s = DebugExitStatus.From(0x80);
        Assert.Equal(0x101ul, s.FullStatus);
        Assert.Equal(1, s.ProcessStatus);
        Assert.True(s.Wrapped);
        Assert.False(DebugExitStatus.From(0x7f).Wrapped);
    }

    [Fact]
    public void Unknown_option_is_rejected_naming_the_key()
    {
        var e = Assert.Throws<ConfigException>(() => DebugExitDevice.ValidateOptions(Context("iosize = 4").Options));
        Assert.Equal("guest.devices.exit.options.iosize", e.Key);
        Assert.Contains("test.conf", e.Message);
    }

    [Fact]
    public void Device_with_an_unknown_option_fails_to_start_with_the_config_error()
    {
        var ctx = Context("iosize = 4");
        EventFilter.Custom<Error>(e => FindConfigError(e.Cause)?.Key == "guest.devices.exit.options.iosize")
            .ExpectOne(() => Sys.ActorOf(Props.Create(() => new DebugExitDevice(ctx))));
    }

    private static ConfigException? FindConfigError(Exception? e)
    {
        for (; e is not null; e = e.InnerException)
            if (e is ConfigException c) return c;
        return null;
    }
}

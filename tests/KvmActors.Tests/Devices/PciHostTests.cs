using Akka.Actor;
using Akka.Configuration;
using Akka.TestKit;
using Akka.TestKit.Xunit2;
using KvmActors.Devices.PciHost;
using KvmActors.Runtime.Bus;
using KvmActors.Sdk;
using KvmActors.Runtime.Config;
using KvmActors.Runtime.Devices;
using Xunit;

namespace KvmActors.Tests.Devices;

public sealed class PciHostTests : TestKit
{
    private const ushort First = 0xcf8;
    private readonly TestProbe _vm;
    private long _seq;

    public PciHostTests() => _vm = CreateTestProbe("vm");

    private DeviceContext Context(string options = "") => new()
    {
        Name = "pci",
        Type = "pci-host-none",
        Options = new DeviceOptions(ConfigurationFactory.ParseString(options), "guest.devices.pci.options", "test.conf", Path.GetTempPath()),
        Ports = [new PortRange(First, 0xcff)],
        Vm = _vm.Ref,
        Machine = new MachineInfo(1, 16UL << 20, []),
    };

    private IActorRef Device()
    {
        var ctx = Context();
        return Sys.ActorOf(Props.Create(() => new PciHostNoneDevice(ctx)));
    }

    private static void Out(IActorRef device, ushort port, int size, uint value) =>
        device.Tell(new PortWrite(port, (ushort)(port - First), size, value, 0));

    private ulong In(IActorRef device, ushort port, int size)
    {
        var seq = ++_seq;
        device.Tell(new PortRead(port, (ushort)(port - First), size, 0, seq));
        var r = ExpectMsg<ReadCompleted>();
        Assert.Equal(seq, r.Seq);
        return r.Value;
    }

    [Fact]
    public void Address_register_reads_back_what_was_written()
    {
        var device = Device();
        Assert.Equal(0ul, In(device, 0xcf8, 4));
        Out(device, 0xcf8, 4, 0x8000_0000);
        Assert.Equal(0x8000_0000ul, In(device, 0xcf8, 4));
        Out(device, 0xcf8, 4, 0x8000_f80c);
        Assert.Equal(0x8000_f80cul, In(device, 0xcf8, 4));
    }

    [Theory]
    [InlineData(0xcfc, 4, 0xffff_fffful)]
    [InlineData(0xcfc, 2, 0xfffful)]
    [InlineData(0xcfe, 2, 0xfffful)]
    [InlineData(0xcfc, 1, 0xfful)]
    [InlineData(0xcff, 1, 0xfful)]
    public void Every_config_read_is_all_ones(int port, int size, ulong expected)
    {
        var device = Device();
        Out(device, 0xcf8, 4, 0x8000_0000); // bus 0, device 0, function 0, vendor/device ID
        Assert.Equal(expected, In(device, (ushort)port, size));
    }

    [Fact]
    public void Config_writes_are_dropped()
    {
        var device = Device();
        Out(device, 0xcf8, 4, 0x8000_0004);
        Out(device, 0xcfc, 4, 0x0000_0007);
        Assert.Equal(0xffff_fffful, In(device, 0xcfc, 4));
        Assert.Equal(0x8000_0004ul, In(device, 0xcf8, 4));
    }

    [Fact]
    public void Narrow_accesses_to_the_address_ports_miss_the_register()
    {
        var device = Device();
        Out(device, 0xcf8, 4, 0x8000_0000);
        // The mechanism #2 probe: byte writes of 0 to 0xcf8 and 0xcfa, then read them back.
        Out(device, 0xcfb, 1, 0x00);
        Out(device, 0xcf8, 1, 0x00);
        Out(device, 0xcfa, 1, 0x00);
        Assert.Equal(0xfful, In(device, 0xcf8, 1));
        Assert.Equal(0xfful, In(device, 0xcfa, 1));
        Assert.Equal(0xfffful, In(device, 0xcf8, 2));
        Assert.Equal(0x8000_0000ul, In(device, 0xcf8, 4));
    }

    [Fact]
    public void Model_only_a_dword_write_at_offset_0_lands()
    {
        var m = new PciConfigNoDevices();
        Assert.True(m.Write(0, 4, 0x8000_0010));
        Assert.False(m.Write(0, 2, 0x1234));
        Assert.False(m.Write(4, 4, 0x1234));
        Assert.Equal(0x8000_0010u, m.Address);
        Assert.Equal(0xfffful, m.Read(6, 2));
    }

    [Fact]
    public void Unknown_option_is_rejected_naming_the_key()
    {
        var e = Assert.Throws<ConfigException>(() => PciHostNoneDevice.ValidateOptions(Context("devices = []").Options));
        Assert.Equal("guest.devices.pci.options.devices", e.Key);
    }
}

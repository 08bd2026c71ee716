using Akka.Actor;
using Akka.Configuration;
using Akka.TestKit;
using Akka.TestKit.Xunit2;
using KvmActors.Devices.PostCode;
using KvmActors.Runtime.Bus;
using KvmActors.Sdk;
using KvmActors.Runtime.Config;
using KvmActors.Runtime.Devices;
using Xunit;

namespace KvmActors.Tests.Devices;

public sealed class PostCodeTests : TestKit
{
    private const ushort Port = 0x80;
    private readonly TestProbe _vm;

    public PostCodeTests() => _vm = CreateTestProbe("vm");

    private DeviceContext Context(string options = "") => new()
    {
        Name = "post",
        Type = "post-code",
        Options = new DeviceOptions(ConfigurationFactory.ParseString(options), "guest.devices.post.options", "test.conf", Path.GetTempPath()),
        Ports = [new PortRange(Port, Port)],
        Vm = _vm.Ref,
        Machine = new MachineInfo(1, 16UL << 20, []),
    };

    private IActorRef Device(string options = "")
    {
        var ctx = Context(options);
        return Sys.ActorOf(Props.Create(() => new PostCodeDevice(ctx)));
    }

    private static void Out(IActorRef device, uint value, int size = 1) => device.Tell(new PortWrite(Port, 0, size, value, 0));

    private PostCodes Codes(IActorRef device)
    {
        device.Tell(GetPostCodes.Instance);
        return ExpectMsg<PostCodes>();
    }

    [Fact]
    public void Records_every_code_in_order()
    {
        var device = Device();
        Out(device, 0x01);
        Out(device, 0x13);
        Out(device, 0x13);
        Out(device, 0xaa);

        var codes = Codes(device);
        Assert.Equal(new byte[] { 0x01, 0x13, 0x13, 0xaa }, codes.Codes);
        Assert.Equal(0, codes.Dropped);
        Assert.Equal(4, codes.Total);
        _vm.ExpectNoMsg(TimeSpan.Zero);
    }

    [Fact]
    public void No_codes_before_any_write()
    {
        Assert.Empty(Codes(Device()).Codes);
    }

    [Fact]
    public void Reply_is_a_snapshot()
    {
        var device = Device();
        Out(device, 0x10);
        var first = Codes(device);
        Out(device, 0x20);
        var second = Codes(device);

        Assert.Equal(new byte[] { 0x10 }, first.Codes);
        Assert.Equal(new byte[] { 0x10, 0x20 }, second.Codes);
    }

    [Fact]
    public void Reads_return_the_last_code_written()
    {
        var device = Device();
        device.Tell(new PortRead(Port, 0, 1, 0, 1));
        Assert.Equal(0ul, ExpectMsg<ReadCompleted>().Value);

        Out(device, 0x42);
        Out(device, 0x43);
        device.Tell(new PortRead(Port, 0, 1, 0, 2));
        Assert.Equal(0x43ul, ExpectMsg<ReadCompleted>().Value);
        device.Tell(new PortRead(Port, 0, 2, 0, 3));
        Assert.Equal(0x43ul, ExpectMsg<ReadCompleted>().Value);
    }

    [Fact]
    public void Wide_writes_record_the_low_byte()
    {
        var device = Device();
        Out(device, 0xbeef, 2);
        Out(device, 0x12345678, 4);

        Assert.Equal(new byte[] { 0xef, 0x78 }, Codes(device).Codes);
    }

    [Fact]
    public void Max_codes_keeps_the_most_recent_and_counts_the_dropped()
    {
        var device = Device("max-codes = 3");
        for (byte b = 1; b <= 5; b++) Out(device, b);

        var codes = Codes(device);
        Assert.Equal(new byte[] { 3, 4, 5 }, codes.Codes);
        Assert.Equal(2, codes.Dropped);
        Assert.Equal(5, codes.Total);
    }

    [Fact]
    public void Default_max_codes()
    {
        Assert.Equal(PostCodeDevice.DefaultMaxCodes, PostCodeDevice.ParseMaxCodes(Context().Options));
        Assert.Equal(1024, PostCodeDevice.ParseMaxCodes(Context("max-codes = 1K").Options));
    }

    [Theory]
    [InlineData("max-codes = 0")]
    [InlineData("max-codes = 4G")]
    [InlineData("max-codes = many")]
    public void Bad_max_codes_is_rejected_naming_the_key(string options)
    {
        var e = Assert.Throws<ConfigException>(() => PostCodeDevice.ParseMaxCodes(Context(options).Options));
        Assert.Equal("guest.devices.post.options.max-codes", e.Key);
    }

    [Fact]
    public void Unknown_option_is_rejected_naming_the_key()
    {
        var e = Assert.Throws<ConfigException>(() => PostCodeDevice.ParseMaxCodes(Context("log-level = debug").Options));
        Assert.Equal("guest.devices.post.options.log-level", e.Key);
    }

    [Fact]
    public void Log_model_wraps_at_capacity()
    {
        var log = new PostCodeLog(2);
        log.Record(1);
        log.Record(2);
        log.Record(3);
        Assert.Equal(3, log.Last);
        Assert.Equal(new byte[] { 2, 3 }, log.Snapshot().Codes);
        Assert.Equal(1, log.Dropped);
        Assert.Throws<ArgumentOutOfRangeException>(() => new PostCodeLog(0));
    }
}

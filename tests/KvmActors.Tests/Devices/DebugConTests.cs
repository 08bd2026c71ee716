using System.Text;
using Akka.Actor;
using Akka.Configuration;
using Akka.Event;
using Akka.TestKit;
using Akka.TestKit.Xunit2;
using KvmActors.Devices.DebugCon;
using KvmActors.Runtime.Bus;
using KvmActors.Sdk;
using KvmActors.Runtime.Config;
using KvmActors.Runtime.Devices;
using Xunit;

namespace KvmActors.Tests.Devices;

public sealed class DebugConTests : TestKit
{
    private const ushort Port = 0xe9;
    private readonly TestProbe _vm;
    private long _seq;

    public DebugConTests() => _vm = CreateTestProbe("vm");

    private DeviceContext Context(string options, string? baseDirectory = null) => new()
    {
        Name = "dbgcon",
        Type = "debugcon",
        Options = new DeviceOptions(ConfigurationFactory.ParseString(options), "guest.devices.dbgcon.options", "test.conf", baseDirectory ?? Path.GetTempPath()),
        Ports = [new PortRange(Port, Port)],
        Vm = _vm.Ref,
        Machine = new MachineInfo(1, 16UL << 20, []),
    };

    private IActorRef Device(string options = "sink = \"memory:con\"", string? baseDirectory = null)
    {
        var ctx = Context(options, baseDirectory);
        return Sys.ActorOf(Props.Create(() => new DebugConDevice(ctx)));
    }

    private ulong Read(IActorRef device, int size = 1)
    {
        var seq = ++_seq;
        device.Tell(new PortRead(Port, 0, size, 0, seq));
        var r = ExpectMsg<ReadCompleted>();
        Assert.Equal(seq, r.Seq);
        return r.Value;
    }

    private static void WriteText(IActorRef device, string text)
    {
        foreach (var b in Encoding.ASCII.GetBytes(text)) device.Tell(new PortWrite(Port, 0, 1, b, 0));
    }

    [Fact]
    public void Byte_writes_reach_the_sink_in_order()
    {
        var device = Device();
        WriteText(device, "hello, debugcon\n");
        Read(device); // fence: the writes before it are handled

        Assert.Equal("hello, debugcon\n", HostIo.For(Sys).Memory("con").Text);
        _vm.ExpectNoMsg(TimeSpan.Zero);
    }

    [Fact]
    public void Wide_writes_emit_every_byte_low_byte_first()
    {
        var device = Device();
        device.Tell(new PortWrite(Port, 0, 2, 0x4241, 0));       // "AB"
        device.Tell(new PortWrite(Port, 0, 4, 0x0a464544, 0));   // "DEF\n"
        Read(device);

        Assert.Equal("ABDEF\n", HostIo.For(Sys).Memory("con").Text);
    }

    [Fact]
    public void Reads_return_0xe9_by_default()
    {
        var device = Device();
        Assert.Equal(0xe9ul, Read(device));
        Assert.Equal(0xe9e9ul, Read(device, 2));
        Assert.Equal(0xe9e9e9e9ul, Read(device, 4));
    }

    [Fact]
    public void Readback_option_sets_the_read_value()
    {
        var device = Device("sink = null\nreadback = 0x42");
        Assert.Equal(0x42ul, Read(device));
        Assert.Equal(0x4242ul, Read(device, 2));
    }

    [Fact]
    public void File_sink_is_relative_to_the_config_folder_and_written_while_the_device_runs()
    {
        var dir = Directory.CreateTempSubdirectory("debugcon-test").FullName;
        try
        {
            var device = Device("sink = \"file:guest.log\"", dir);
            WriteText(device, "boot ok\n");
            Read(device);

            // The sink's own writer thread puts the bytes in the file (a device never blocks on host I/O), soon,
            // while the device is still running.
            AwaitAssert(() =>
            {
                using var f = new FileStream(Path.Combine(dir, "guest.log"), FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
                Assert.Equal("boot ok\n", new StreamReader(f).ReadToEnd());
            }, TimeSpan.FromSeconds(5));

            Watch(device);
            Sys.Stop(device);
            ExpectTerminated(device);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void Settings_defaults()
    {
        var s = DebugConSettings.Parse(Context("").Options);
        Assert.Equal("stdout", s.Sink);
        Assert.Equal(0xe9, s.Readback);
    }

    [Theory]
    [InlineData("sink = null")]   // HOCON null
    [InlineData("sink = \"null\"")]
    public void Null_sink_quoted_or_not(string options)
    {
        Assert.Equal("null", DebugConSettings.Parse(Context(options).Options).Sink);
    }

    [Theory]
    [InlineData("readback = 256", "readback")]
    [InlineData("sink = \"\"", "sink")]
    [InlineData("readback = -1", "readback")]
    [InlineData("readback = lots", "readback")]
    public void Bad_readback_is_rejected_naming_the_key(string options, string key)
    {
        var e = Assert.Throws<ConfigException>(() => DebugConSettings.Parse(Context(options).Options));
        Assert.Equal($"guest.devices.dbgcon.options.{key}", e.Key);
    }

    [Fact]
    public void Unknown_option_is_rejected_naming_the_key()
    {
        var e = Assert.Throws<ConfigException>(() => DebugConSettings.Parse(Context("sink = stdout\nchardev = foo").Options));
        Assert.Equal("guest.devices.dbgcon.options.chardev", e.Key);
        Assert.Contains("test.conf", e.Message);
    }

    [Fact]
    public void Device_with_an_unknown_option_fails_to_start_with_the_config_error()
    {
        var ctx = Context("chardev = foo");
        EventFilter.Custom<Error>(e => FindConfigError(e.Cause)?.Key == "guest.devices.dbgcon.options.chardev")
            .ExpectOne(() => Sys.ActorOf(Props.Create(() => new DebugConDevice(ctx))));
    }

    [Fact]
    public void Device_with_an_unknown_sink_fails_to_start_naming_the_sink_option()
    {
        var ctx = Context("sink = \"pipe:x\"");
        EventFilter.Custom<Error>(e => FindConfigError(e.Cause)?.Key == "guest.devices.dbgcon.options.sink")
            .ExpectOne(() => Sys.ActorOf(Props.Create(() => new DebugConDevice(ctx))));
    }

    private static ConfigException? FindConfigError(Exception? e)
    {
        for (; e is not null; e = e.InnerException)
            if (e is ConfigException c) return c;
        return null;
    }
}

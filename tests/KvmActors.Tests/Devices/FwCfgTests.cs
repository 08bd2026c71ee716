using System.Buffers.Binary;
using System.Text;
using Akka.Actor;
using Akka.Configuration;
using Akka.TestKit;
using Akka.TestKit.Xunit2;
using KvmActors.Devices.FwCfg;
using KvmActors.Runtime.Bus;
using KvmActors.Sdk;
using KvmActors.Runtime.Config;
using KvmActors.Runtime.Devices;
using Xunit;

namespace KvmActors.Tests.Devices;

public sealed class FwCfgTests : TestKit
{
    private const ushort Selector = 0x510;
    private const ushort Data = 0x511;
    private const ulong Ram = 192UL << 20;
    private const int Cpus = 3;
    private readonly TestProbe _vm;
    private long _seq;

    public FwCfgTests() => _vm = CreateTestProbe("vm");

    private DeviceContext Context(string options = "") => new()
    {
        Name = "fwcfg",
        Type = "fw-cfg",
        Options = new DeviceOptions(ConfigurationFactory.ParseString(options), "guest.devices.fwcfg.options", "test.conf", Path.GetTempPath()),
        Ports = [new PortRange(Selector, Data)],
        Vm = _vm.Ref,
        Machine = new MachineInfo(Cpus, Ram, []),
    };

    private IActorRef Device()
    {
        var ctx = Context();
        return Sys.ActorOf(Props.Create(() => new FwCfgDevice(ctx)));
    }

    private static void Select(IActorRef device, ushort key, int size = 2) => device.Tell(new PortWrite(Selector, 0, size, key, 0));

    private ulong In(IActorRef device, ushort port, int size = 1)
    {
        var seq = ++_seq;
        device.Tell(new PortRead(port, (ushort)(port - Selector), size, 0, seq));
        var r = ExpectMsg<ReadCompleted>();
        Assert.Equal(seq, r.Seq);
        return r.Value;
    }

    private byte[] ReadBytes(IActorRef device, int count)
    {
        var bytes = new byte[count];
        for (var i = 0; i < count; i++) bytes[i] = (byte)In(device, Data);
        return bytes;
    }

    [Fact]
    public void Signature_is_QEMU()
    {
        var device = Device();
        Select(device, 0x0000);
        Assert.Equal("QEMU", Encoding.ASCII.GetString(ReadBytes(device, 4)));
    }

    [Fact]
    public void Id_says_traditional_interface_only()
    {
        var device = Device();
        Select(device, 0x0001);
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(ReadBytes(device, 4)));
    }

    [Fact]
    public void Ram_size_is_a_little_endian_u64_from_the_machine()
    {
        var device = Device();
        Select(device, 0x0003);
        Assert.Equal(Ram, BinaryPrimitives.ReadUInt64LittleEndian(ReadBytes(device, 8)));
    }

    [Fact]
    public void Cpu_count_is_a_little_endian_u16_from_the_machine()
    {
        var device = Device();
        Select(device, 0x0005);
        Assert.Equal((ushort)Cpus, BinaryPrimitives.ReadUInt16LittleEndian(ReadBytes(device, 2)));
    }

    [Fact]
    public void Reads_past_the_end_return_zero()
    {
        var device = Device();
        Select(device, 0x0000);
        Assert.Equal(new byte[] { (byte)'Q', (byte)'E', (byte)'M', (byte)'U', 0, 0, 0 }, ReadBytes(device, 7));
    }

    [Theory]
    [InlineData(0x0002)]
    [InlineData(0x0019)]
    [InlineData(0x0020)]
    [InlineData(0x8000)]
    [InlineData(0xffff)]
    public void Unknown_keys_read_as_zero(int key)
    {
        var device = Device();
        Select(device, (ushort)key);
        Assert.All(ReadBytes(device, 8), b => Assert.Equal(0, b));
    }

    [Fact]
    public void Selecting_rewinds_the_data_offset()
    {
        var device = Device();
        Select(device, 0x0000);
        ReadBytes(device, 2);
        Select(device, 0x0000);
        Assert.Equal("QEMU", Encoding.ASCII.GetString(ReadBytes(device, 4)));
    }

    [Fact]
    public void Write_channel_bit_selects_the_same_item_and_data_writes_are_ignored()
    {
        var device = Device();
        Select(device, 0x4000);
        device.Tell(new PortWrite(Data, 1, 1, 0x58, 0));
        Assert.Equal("QEMU", Encoding.ASCII.GetString(ReadBytes(device, 4)));
    }

    [Fact]
    public void Wide_data_reads_return_consecutive_bytes_low_byte_first()
    {
        var device = Device();
        Select(device, 0x0000);
        Assert.Equal(0x554d_4551ul, In(device, Data, 4)); // 'Q' (0x51) in the low byte: "QEMU" when stored little-endian
        Select(device, 0x0005);
        Assert.Equal((ulong)Cpus, In(device, Data, 2));
    }

    [Fact]
    public void Byte_selector_write_selects_the_zero_extended_key()
    {
        var device = Device();
        Select(device, 0x0001, size: 1);
        Assert.Equal(1ul, In(device, Data, 4));
    }

    [Fact]
    public void Selector_reads_return_all_ones()
    {
        Assert.Equal(0xfffful, In(Device(), Selector, 2));
    }

    [Fact]
    public void Items_table_builds_a_sorted_big_endian_file_directory()
    {
        var items = FwCfgItems.ForMachine(new MachineInfo(1, 1UL << 20, []));
        var k1 = items.AddFile("etc/zz", [1, 2, 3]);
        var k2 = items.AddFile("etc/aa", [9]);
        Assert.Equal(0x20, k1);
        Assert.Equal(0x21, k2);

        var port = new FwCfgPort(items);
        port.Select(FwCfgItems.FileDirectory);
        var dir = new byte[4 + 2 * 64];
        for (var i = 0; i < dir.Length; i++) dir[i] = port.ReadByte();

        Assert.Equal(2u, BinaryPrimitives.ReadUInt32BigEndian(dir));
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32BigEndian(dir.AsSpan(4)));
        Assert.Equal(0x21, BinaryPrimitives.ReadUInt16BigEndian(dir.AsSpan(8)));
        Assert.Equal("etc/aa", Encoding.ASCII.GetString(dir, 12, 56).TrimEnd('\0'));
        Assert.Equal(3u, BinaryPrimitives.ReadUInt32BigEndian(dir.AsSpan(68)));
        Assert.Equal(0x20, BinaryPrimitives.ReadUInt16BigEndian(dir.AsSpan(72)));
        Assert.Equal("etc/zz", Encoding.ASCII.GetString(dir, 76, 56).TrimEnd('\0'));

        port.Select(k1);
        Assert.Equal(0x030201ul, port.Read(4));
    }

    [Fact]
    public void Items_table_rejects_misuse()
    {
        var items = new FwCfgItems();
        Assert.Throws<ArgumentException>(() => items.Set(FwCfgItems.FileDirectory, [0]));
        Assert.Throws<ArgumentException>(() => items.Set(0x0020, [0]));
        Assert.Throws<ArgumentException>(() => items.AddFile(new string('x', 56), [0]));
        items.AddFile("etc/x", [0]);
        Assert.Throws<ArgumentException>(() => items.AddFile("etc/x", [1]));
        items.Set(0x8003, [1]); // arch-local keys are fine
        Assert.True(items.Contains(0x8003));
    }

    [Fact]
    public void String_items_are_nul_terminated()
    {
        var items = new FwCfgItems();
        items.SetString(FwCfgItems.KernelCmdline, "console=ttyS0");
        Assert.Equal("console=ttyS0\0", Encoding.ASCII.GetString(items.Get(FwCfgItems.KernelCmdline)));
    }

    [Fact]
    public void Unknown_option_is_rejected_naming_the_key()
    {
        var e = Assert.Throws<ConfigException>(() => FwCfgDevice.ValidateOptions(Context("cmdline = \"quiet\"").Options));
        Assert.Equal("guest.devices.fwcfg.options.cmdline", e.Key);
    }
}

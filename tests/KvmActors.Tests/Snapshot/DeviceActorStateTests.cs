using System.Text.Json;
using Akka.Actor;
using KvmActors.Devices.Uart16550;
using KvmActors.Runtime.Devices;
using KvmActors.Tests.DevicesOnKvm;
using KvmActors.Tests.Support;
using Xunit;
using Xunit.Abstractions;
using static KvmActors.Tests.Snapshot.Access;

namespace KvmActors.Tests.Snapshot;

/// <summary>
/// Every device's state through the snapshot messages: driven into a state by guest accesses, saved, written as
/// JSON text and read back (as a state file does), restored into a fresh actor, then the same accesses give the
/// same values on both, and different ones on a device that was not restored (so the state is what made them equal).
/// </summary>
public sealed class DeviceActorStateTests(ITestOutputHelper output) : DeviceStateKit(output)
{
    private sealed record Case(string Type, string Options, PortRange[] Ports, MmioRange[] Mmio, Access[] Setup, Access[] Probe);

    private static readonly Dictionary<string, Case> Cases = new()
    {
        ["uart-16550"] = new("uart-16550", "sink = null", [new(0x3f8, 0x3ff)], [],
            [
                Out(0x3fb, 0x80), Out(0x3f8, 0x0c), Out(0x3f9, 0x01),  // DLAB: divisor 0x010c
                Out(0x3fb, 0x1b),                                      // 8 bits, even parity
                Out(0x3fa, 0x81),                                      // FIFOs on, trigger 8
                Out(0x3fc, 0x1b), Out(0x3f8, 'a'), Out(0x3f8, 'b'), Out(0x3f8, 'c'), // loopback: into the RX FIFO
                Out(0x3fc, 0x0b),                                      // loopback off: MSR deltas
                Out(0x3ff, 0x5a), Out(0x3f9, 0x0f),
            ],
            [
                In(0x3fa), In(0x3fb), In(0x3fc), In(0x3fd), In(0x3fe), In(0x3fe), In(0x3ff), In(0x3f9),
                In(0x3f8), In(0x3f8), In(0x3f8), In(0x3fd), In(0x3f8), In(0x3fa),
                Out(0x3fb, 0x9b), In(0x3f8), In(0x3f9),
            ]),
        ["fw-cfg"] = new("fw-cfg", "", [new(0x510, 0x511)], [],
            [Out(0x510, 0x0000, 2), In(0x511)],
            [In(0x511), In(0x511), In(0x511)]),
        ["i8042"] = new("i8042", "", [new(0x60, 0x64)], [],
            [
                Out(0x64, 0x60), Out(0x60, 0x47),   // command byte
                Out(0x64, 0xaa),                    // self test: 0x55 waits
                Out(0x64, 0xd3), Out(0x60, 0x99),   // an aux byte waits
                Out(0x64, 0x20),                    // the command byte waits
                Out(0x64, 0xd1),                    // an output-port write waits for its data byte
            ],
            [
                In(0x64), In(0x60), In(0x64), In(0x60), In(0x64), In(0x60), In(0x64), In(0x60),
                Out(0x60, 0x01), Out(0x64, 0xd0), In(0x60),
            ]),
        ["post-code"] = new("post-code", "", [new(0x80, 0x80)], [], [Out(0x80, 0x12), Out(0x80, 0x34)], [In(0x80)]),
        ["cmos-rtc"] = new("cmos-rtc", "", [new(0x70, 0x71)], [],
            [
                Out(0x70, 0x40), Out(0x71, 0x5a),
                Out(0x70, 0x0b), Out(0x71, 0x06),   // binary, 24-hour
                Out(0x70, 0x09), Out(0x71, 80),     // the guest sets the year to 2080
                Out(0x70, 0xc0),                    // NMI masked, index 0x40
            ],
            [In(0x71), Out(0x70, 0x09), In(0x71), Out(0x70, 0x0b), In(0x71)]),
        ["acpi-pm"] = new("acpi-pm", "", [new(0x600, 0x60b)], [],
            [Out(0x602, 0x0521, 2), Out(0x604, 0x0c00, 2)],
            [In(0x602, 2), In(0x604, 2)]),
        ["pc-testdev"] = new("pc-testdev", "", [new(0xe0, 0xeb), new(0x2000, 0x2017)], [new(0xff000000, 0xff00ffff)],
            [Out(0xe0, 0xdeadbeef, 4), MmioOut(0xff000010, 0x1122334455667788, 8)],
            [In(0xe0, 4), In(0xe9), MmioIn(0xff000010, 8), MmioIn(0xff000014, 2)]),
        ["pci-host"] = new("pci-host", "", [new(0xcf8, 0xcff)], [], [Out(0xcf8, 0x80001234, 4)], [In(0xcf8, 4)]),
        ["sample-counter"] = new("sample-counter", "initial = 7, step = 2", [new(0x520, 0x527)], [],
            [Out(0x520, 5, 4), Out(0x520, 3, 4)],
            [In(0x520, 4), In(0x520, 4), In(0x524, 4)]),
    };

    public static TheoryData<string> Devices => new(Cases.Keys);

    private (IActorRef Device, DeviceContext Context) Make(Case c, string name = "dev")
    {
        var context = Context(name, c.Type, c.Options, c.Ports, c.Mmio);
        Type? type = c.Type == "sample-counter"
            ? new DeviceRegistry(BuiltInDevices.Assemblies, [SamplePluginTests.PluginDir]).Resolve(c.Type)
            : null;
        return (Create(context, type), context);
    }

    /// <summary>What a state file does to a state: JSON text and back.</summary>
    private static DeviceState ThroughFile(DeviceState state) =>
        JsonSerializer.Deserialize<DeviceState>(JsonSerializer.Serialize(state, new JsonSerializerOptions { WriteIndented = true }))!;

    [Theory]
    [MemberData(nameof(Devices))]
    public void A_restored_device_reads_as_the_original_did(string device)
    {
        var c = Cases[device];
        var (original, ctx) = Make(c);
        Run(original, ctx, c.Setup);
        var state = Save(original, "dev");
        Assert.NotNull(state);
        Assert.Equal(c.Type, state.Type);

        var (restored, restoredCtx) = Make(c);
        Assert.Null(Restore(restored, ThroughFile(state)));
        var (fresh, freshCtx) = Make(c);

        var expected = Run(original, ctx, c.Probe);
        Assert.Equal(expected, Run(restored, restoredCtx, c.Probe));
        Assert.NotEqual(expected, Run(fresh, freshCtx, c.Probe));
    }

    [Theory]
    [InlineData("debugcon", "sink = null")]
    [InlineData("debug-exit", "")]
    public void A_state_less_device_saves_null(string type, string options)
    {
        var device = Create(Context("quiet", type, options, [new(0xe9, 0xe9)]));
        device.Tell(new PortWrite(0xe9, 0, 1, 0x41, 0));
        Assert.Null(Save(device, "quiet"));
    }

    private DeviceState FwCfgState(string json) =>
        new("fw-cfg", 1, JsonDocument.Parse(json).RootElement.Clone());

    [Fact]
    public void A_state_of_another_type_is_refused_naming_both_types()
    {
        var (uart, _) = Make(Cases["uart-16550"]);
        var state = Save(uart, "dev")!;
        var (fwcfg, _) = Make(Cases["fw-cfg"], "fwcfg");
        var error = Restore(fwcfg, state);
        Assert.NotNull(error);
        Assert.Contains("'uart-16550'", error);
        Assert.Contains("'fw-cfg'", error);
    }

    [Fact]
    public void A_state_of_another_version_is_refused_naming_the_versions()
    {
        var (fwcfg, _) = Make(Cases["fw-cfg"]);
        var state = Save(fwcfg, "dev")! with { Version = 7 };
        var error = Restore(Make(Cases["fw-cfg"]).Device, state);
        Assert.Equal("fw-cfg state has version 7; this device reads version 1", error);
    }

    [Theory]
    [InlineData("""{"selector": "x", "offset": 0}""", "selector")]   // a string where a number goes
    [InlineData("""{"selector": 1}""", "offset")]                    // a field missing
    [InlineData("""{"selector": 1, "offset": 0, "colour": 3}""", "colour")] // a field the record does not have
    [InlineData("""[1, 2]""", "FwCfgPortState")]                     // not an object
    public void Corrupt_data_is_refused_saying_what_does_not_fit(string json, string named)
    {
        var error = Restore(Make(Cases["fw-cfg"]).Device, FwCfgState(json));
        Assert.NotNull(error);
        Assert.StartsWith("fw-cfg state version 1: the data does not fit: ", error);
        Assert.Contains(named, error);
    }

    [Fact]
    public void A_value_out_of_range_is_refused_naming_the_field()
    {
        var error = Restore(Make(Cases["fw-cfg"]).Device, FwCfgState("""{"selector": 0, "offset": 99}"""));
        Assert.Equal("fw-cfg state: offset: 99 is outside item 0x0000 (4 bytes)", error);

        var (uart, _) = Make(Cases["uart-16550"]);
        var saved = Save(uart, "dev")!.Read<Uart16550Device.UartSaved>();
        var tooLong = saved with { Uart = saved.Uart with { FifoEnabled = true, Rx = new byte[17], RxErrors = new byte[17] } };
        var uartError = Restore(Make(Cases["uart-16550"]).Device, DeviceState.Of("uart-16550", 1, tooLong));
        Assert.Equal("uart-16550 state: rx: 17 bytes, more than the receiver holds (16)", uartError);
    }

    [Fact]
    public void Post_codes_come_back_with_their_log()
    {
        var c = Cases["post-code"];
        var (original, ctx) = Make(c);
        Run(original, ctx, c.Setup);
        var (restored, _) = Make(c);
        Assert.Null(Restore(restored, ThroughFile(Save(original, "dev")!)));
        restored.Tell(KvmActors.Devices.PostCode.GetPostCodes.Instance, TestActor);
        Assert.Equal([0x12, 0x34], ExpectMsg<KvmActors.Devices.PostCode.PostCodes>().Codes);
    }
}

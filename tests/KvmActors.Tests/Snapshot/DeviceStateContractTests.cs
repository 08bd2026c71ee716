using System.Text.Json;
using Akka.Actor;
using Xunit;
using Xunit.Abstractions;
using static KvmActors.Tests.Snapshot.Access;

namespace KvmActors.Tests.Snapshot;

/// <summary>A device of the test's own: a byte register kept across restarts, a message that fails it, and a restore that may throw anything.</summary>
public sealed class KeptRegisterDevice : DeviceActor
{
    public sealed class Box { public byte Value; }
    public sealed record Saved(byte Value, string? Fail);
    public sealed record Fail;

    private readonly Box _box;

    public KeptRegisterDevice(DeviceContext context) : base(context) => _box = Kept(() => new Box());

    protected override bool KeepsStateOnRestart => true;
    protected override ulong OnRead(DeviceAccess access) => _box.Value;
    protected override void OnWrite(DeviceAccess access, ulong value) => _box.Value = (byte)value;

    protected override void OnMessage(object message)
    {
        if (message is Fail) throw new InvalidOperationException("failed on purpose");
        Unhandled(message);
    }

    protected override DeviceState SaveState() => DeviceState.Of(Device.Type, 1, new Saved(_box.Value, null));

    // Into the kept object, so a restarted incarnation goes on with the restored value.
    protected override void RestoreState(DeviceState state)
    {
        state.ExpectVersion(1);
        var saved = state.Read<Saved>();
        if (saved.Fail is { } why) throw new ArgumentException(why);
        _box.Value = saved.Value;
    }
}

/// <summary>The SDK's state contract: DeviceState as JSON, its strict reading, and the base class's handling of the messages.</summary>
public sealed class DeviceStateContractTests(ITestOutputHelper output) : DeviceStateKit(output)
{
    private sealed record Sample(byte[] Bytes, ushort Word, string? Note, int[] Numbers);

    private static readonly PortRange Port = new(0x530, 0x530);

    private (IActorRef Device, DeviceContext Context) Kept()
    {
        var context = Context("kept", "kept-register", ports: [Port]);
        return (Create(context, typeof(KeptRegisterDevice)), context);
    }

    [Fact]
    public void A_state_serialised_as_json_and_read_back_equals_the_original()
    {
        var state = DeviceState.Of("sample", 3, new Sample([1, 2, 0xff], 0xbeef, null, [4, 5]));
        var text = JsonSerializer.Serialize(state);
        Assert.Contains("\"bytes\":\"AQL/\"", text); // byte arrays as base64, names in camelCase

        var back = JsonSerializer.Deserialize<DeviceState>(text)!;
        Assert.Equal(state, back);
        Assert.Equal(state.Data.GetRawText(), back.Data.GetRawText());
        var indented = JsonSerializer.Deserialize<DeviceState>(JsonSerializer.Serialize(state, new JsonSerializerOptions { WriteIndented = true }))!;
        Assert.Equal(state, indented);
        var data = back.Read<Sample>();
        Assert.Equal([1, 2, 0xff], data.Bytes);
        Assert.Equal(0xbeef, data.Word);
        Assert.Null(data.Note);
        Assert.Equal([4, 5], data.Numbers);
        Assert.NotEqual(state, state with { Version = 4 });
        Assert.NotEqual(state, DeviceState.Of("sample", 3, new Sample([1, 2, 0xfe], 0xbeef, null, [4, 5])));
    }

    [Fact]
    public void A_state_is_a_copy_the_device_cannot_change_afterwards()
    {
        var bytes = new byte[] { 1, 2, 3 };
        var state = DeviceState.Of("sample", 1, new Sample(bytes, 0, null, []));
        bytes[0] = 9;
        Assert.Equal([1, 2, 3], state.Read<Sample>().Bytes);
    }

    [Theory]
    [InlineData("""{"bytes": "AQ==", "word": 1, "numbers": []}""", "note")]               // missing (even a nullable one)
    [InlineData("""{"bytes": null, "word": 1, "note": null, "numbers": []}""", "bytes")]   // null where the record says not null
    [InlineData("""{"bytes": "AQ==", "word": 70000, "note": null, "numbers": []}""", "word")] // out of range for the type
    [InlineData("""{"bytes": "AQ==", "word": 1, "note": null, "numbers": [], "x": 0}""", "'x'")]
    public void Reading_data_of_another_shape_throws_a_device_state_exception(string json, string named)
    {
        var state = new DeviceState("sample", 2, JsonDocument.Parse(json).RootElement.Clone());
        var e = Assert.Throws<DeviceStateException>(() => state.Read<Sample>());
        Assert.StartsWith("sample state version 2: the data does not fit: ", e.Message);
        Assert.Contains(named, e.Message);
        Assert.Equal(ErrorKind.Config, e.Kind);
    }

    [Fact]
    public void Expect_version_names_the_versions_it_reads()
    {
        var state = DeviceState.Of("sample", 3, 0);
        state.ExpectVersion(1, 3);
        Assert.Equal("sample state has version 3; this device reads versions 1, 2",
            Assert.Throws<DeviceStateException>(() => state.ExpectVersion(1, 2)).Message);
    }

    [Fact]
    public void A_restore_goes_into_the_kept_state_so_a_restarted_device_keeps_it()
    {
        var (original, ctx) = Kept();
        Run(original, ctx, [Out(0x530, 0x42)]);
        var state = Save(original, "kept")!;

        var (restored, restoredCtx) = Kept();
        Assert.Null(Restore(restored, state));
        Assert.Equal([0x42UL], Run(restored, restoredCtx, [In(0x530)]));
        restored.Tell(new KeptRegisterDevice.Fail()); // a restart: the next incarnation takes the kept object
        Assert.Equal([0x42UL], Run(restored, restoredCtx, [In(0x530)]));
    }

    [Fact]
    public void Whatever_a_restore_throws_is_the_answer_and_the_device_goes_on()
    {
        var (device, ctx) = Kept();
        var bad = DeviceState.Of("kept-register", 1, new KeptRegisterDevice.Saved(7, "the register is on fire"));
        Assert.Equal("ArgumentException: the register is on fire", Restore(device, bad));
        Assert.Equal([0UL], Run(device, ctx, [In(0x530)])); // not restarted, not restored
    }
}

using Akka.Configuration;
using KvmActors;
using KvmActors.Sdk;
using Xunit;

namespace MyDevice.Tests;

public class MyDeviceRegistersTests
{
    private static MyDeviceSettings Parse(string hocon) =>
        MyDeviceSettings.Parse(new DeviceOptions(ConfigurationFactory.ParseString(hocon), "guest.devices.mine.options", "test.conf", "."));

    [Fact]
    public void Id_reads_the_option_and_scratch_keeps_what_was_written()
    {
        var regs = new MyDeviceRegisters(Parse("id = 0x10"));
        Assert.Equal(0x10, regs.Read(MyDeviceRegisters.Id));
        regs.Write(MyDeviceRegisters.Scratch, 0x5a);
        regs.Write(MyDeviceRegisters.Id, 0x00); // read-only: ignored
        Assert.Equal(0x5a, regs.Read(MyDeviceRegisters.Scratch));
        Assert.Equal(0x10, regs.Read(MyDeviceRegisters.Id));
        Assert.Equal(1, regs.Read(MyDeviceRegisters.Writes));
        Assert.Equal(0xff, regs.Read(7)); // nothing there: all ones
    }

    [Fact]
    public void Saved_registers_restore_into_a_fresh_device_and_read_the_same()
    {
        var regs = new MyDeviceRegisters(Parse(""));
        regs.Write(MyDeviceRegisters.Scratch, 0x11);
        regs.Write(MyDeviceRegisters.Scratch, 0x77);

        // Through the JSON a state file holds, as a VM snapshot does.
        var state = DeviceState.Of("my-device-type", MyDeviceActor.StateVersion, regs.Save());
        var restored = new MyDeviceRegisters(Parse(""));
        restored.Restore(state.Read<MyDeviceState>());

        Assert.Equal(0x77, restored.Read(MyDeviceRegisters.Scratch));
        Assert.Equal(2, restored.Read(MyDeviceRegisters.Writes));
        Assert.Throws<DeviceStateException>(() => (state with { Version = 9 }).ExpectVersion(MyDeviceActor.StateVersion));
    }

    [Fact]
    public void A_bad_option_is_a_config_error_naming_the_key()
    {
        Assert.Equal(MyDeviceSettings.DefaultId, Parse("").Id);
        var e = Assert.Throws<ConfigException>(() => Parse("id = 300"));
        Assert.Equal("guest.devices.mine.options.id", e.Key);
        Assert.Throws<ConfigException>(() => Parse("colour = red"));
    }
}

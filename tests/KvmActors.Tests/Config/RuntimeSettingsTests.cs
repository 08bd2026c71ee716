using Akka.Configuration;
using KvmActors.Runtime.Config;
using Xunit;

namespace KvmActors.Tests.ConfigBinding;

/// <summary>The kvmactors block is bound once and range-checked at start.</summary>
public sealed class RuntimeSettingsTests
{
    private static ConfigException Fails(string runtime) =>
        Assert.Throws<ConfigException>(() => GuestConfigLoader.FromText($"kvmactors {{ {runtime} }}\nguest.image.inline = f4", "guests/x.conf", "."));

    [Theory]
    [InlineData("vm.kick-signal = abc", "kvmactors.vm.kick-signal", "not a number")]
    [InlineData("vm.kick-signal = 9", "kvmactors.vm.kick-signal", "real-time signal")]
    [InlineData("vm.kick-signal = 19", "kvmactors.vm.kick-signal", "real-time signal")]
    [InlineData("vm.kick-signal = 34", "kvmactors.vm.kick-signal", "real-time signal")]
    [InlineData("vm.kick-signal = 65", "kvmactors.vm.kick-signal", "real-time signal")]
    [InlineData("vm.stop-timeout = abc", "kvmactors.vm.stop-timeout", "not a duration")]
    [InlineData("vm.stop-timeout = 0s", "kvmactors.vm.stop-timeout", "out of range")]
    [InlineData("vm.capture-timeout = 0s", "kvmactors.vm.capture-timeout", "out of range")]
    [InlineData("vm.stop-timeout = 99999999999h", "kvmactors.vm.stop-timeout", "")]
    [InlineData("vm.kick-interval = 1h", "kvmactors.vm.kick-interval", "out of range")]
    [InlineData("vcpu.exits-per-message = 0", "kvmactors.vcpu.exits-per-message", "out of range")]
    [InlineData("vcpu.exits-per-message = 65537", "kvmactors.vcpu.exits-per-message", "out of range")]
    [InlineData("vcpu.thread-nice = -1", "kvmactors.vcpu.thread-nice", "not a number")] // the numbers parser takes no sign
    [InlineData("vcpu.thread-nice = 20", "kvmactors.vcpu.thread-nice", "out of range")]
    [InlineData("vcpu-dispatcher.type = NoSuchDispatcher", "kvmactors.vcpu-dispatcher.type", "neither")]
    [InlineData("device-dispatcher.throughput = 0", "kvmactors.device-dispatcher.throughput", "out of range")]
    [InlineData("devices.read-snapshots = maybe", "kvmactors.devices.read-snapshots", "not a boolean")]
    [InlineData("devices.read-snapshot-wait = 2ms", "kvmactors.devices.read-snapshot-wait", "out of range")]
    [InlineData("devices.read-snapshot-wait = soon", "kvmactors.devices.read-snapshot-wait", "not a duration")]
    [InlineData("devices.plugin-directories = 3", "kvmactors.devices.plugin-directories", "expected a list")]
    [InlineData("vm = 1", "kvmactors.vm", "expected an object")]
    public void Runtime_setting_out_of_range_names_the_key(string runtime, string key, string problem)
    {
        var e = Fails(runtime);
        Assert.Equal(key, e.Key);
        Assert.Equal("guests/x.conf", e.File);
        Assert.Contains(problem, e.Message);
    }

    [Fact]
    public void Runtime_settings_bind_from_reference_conf_and_overrides()
    {
        var d = RuntimeSettingsBinder.Default;
        Assert.Equal(40, d.KickSignal);
        Assert.Equal(TimeSpan.FromSeconds(2), d.StopTimeout);
        Assert.Equal(TimeSpan.FromMilliseconds(20), d.KickInterval);
        Assert.Equal(256, d.ExitsPerMessage);
        Assert.True(d.ReadSnapshots);
        Assert.Equal(19, d.VcpuThreadNice);
        Assert.Equal(TimeSpan.FromMicroseconds(20), d.ReadSnapshotWait);
        var s = RuntimeSettingsBinder.Bind(ConfigurationFactory.ParseString("kvmactors.vm.kick-signal = 41\nkvmactors.vcpu.exits-per-message = 1\nkvmactors.devices.read-snapshots = no\nkvmactors.devices.read-snapshot-wait = 0s"), "x.conf", []);
        Assert.Equal(41, s.KickSignal);
        Assert.Equal(1, s.ExitsPerMessage);
        Assert.False(s.ReadSnapshots);
        Assert.Equal(TimeSpan.Zero, s.ReadSnapshotWait);
    }

    [Fact]
    public void Runtime_kick_signals_exclude_the_one_dotnet_uses()
    {
        var (first, last) = RuntimeSettingsBinder.OwnableRealTimeSignals();
        Assert.Equal(35, first);
        Assert.Equal(64, last);
    }
}

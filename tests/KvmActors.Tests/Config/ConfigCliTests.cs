using KvmActors.Tests.Support;
using Xunit;

namespace KvmActors.Tests.ConfigBinding;

/// <summary>Hostile configs through the real program: exit 2, one line naming the file and key, nothing on stdout.</summary>
public sealed class ConfigCliTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("kvmactors-cli-config-");

    public void Dispose() => _dir.Delete(recursive: true);

    private Kvmactors.Result RunText(string hocon, params string[] extra)
    {
        var path = Path.Combine(_dir.FullName, "g.conf");
        File.WriteAllText(path, hocon);
        return Kvmactors.Run(TimeSpan.FromSeconds(30), ["run", path, "--timeout", "2s", .. extra]);
    }

    private static void AssertConfigError(Kvmactors.Result r, string fileAndKey)
    {
        Assert.Equal(2, r.ExitCode);
        Assert.Equal("", r.Stdout);
        Assert.Contains(fileAndKey, r.Stderr);
        Assert.DoesNotContain("   at ", r.Stderr);
    }

    [Theory]
    [InlineData("guest = 1", "g.conf: guest: ")]
    [InlineData("guest { image.inline = \"f4\"\n cpu = 1 }", "g.conf: guest.cpu: ")]
    [InlineData("guest { image.inline = \"f4\"\n devices.com1 = 1 }", "g.conf: guest.devices.com1: ")]
    [InlineData("guest { image.inline = null }", "g.conf: guest.image.inline: ")]
    [InlineData("guest { image.inline = \"f4\"\n devices.com1.ports = [] }", "g.conf: guest.devices.com1.ports: ")]
    [InlineData("guest.vcpus = ${guest.vcpus}\nguest.image.inline = f4", "g.conf: guest.vcpus: ")]
    [InlineData("kvmactors.vm.kick-signal = abc\nguest.image.inline = f4", "g.conf: kvmactors.vm.kick-signal: ")]
    [InlineData("kvmactors.vm.kick-signal = 9\nguest.image.inline = f4", "g.conf: kvmactors.vm.kick-signal: ")]
    [InlineData("kvmactors.vm.stop-timeout = abc\nguest.image.inline = f4", "g.conf: kvmactors.vm.stop-timeout: ")]
    [InlineData("guest { image.inline = f4\n cpu.mode = real\n memory = [{ address = 0, size = 2M }]\n image.load-address = 0x100000 }", "g.conf: guest.image.load-address: ")]
    [InlineData("guest { image.file = \"/dev/zero\" }", "g.conf: guest.image.file: ")]
    public void Config_hostile_file_through_the_cli_exits_2_naming_the_key(string hocon, string fileAndKey) =>
        AssertConfigError(RunText(hocon), fileAndKey);

    [Fact]
    public void Config_nested_ten_thousand_levels_through_the_cli_exits_2() =>
        AssertConfigError(RunText("guest.image.inline = f4\nx = " + new string('[', 10_000) + new string(']', 10_000)), "g.conf: (syntax): ");

    [Fact]
    public void Config_value_from_set_through_the_cli_is_blamed_on_set() =>
        AssertConfigError(RunText("guest.image.inline = f4", "--set", "guest.vcpus=abc"), "--set: guest.vcpus: ");

    [Fact]
    public void Config_file_that_is_a_fifo_through_the_cli_exits_2_at_once()
    {
        var fifo = Path.Combine(_dir.FullName, "pipe.conf");
        Fifo.Make(fifo);
        var r = Kvmactors.Run(TimeSpan.FromSeconds(30), "run", fifo, "--timeout", "2s");
        AssertConfigError(r, "pipe.conf: (file): ");
        Assert.Contains("a FIFO", r.Stderr);
    }
}

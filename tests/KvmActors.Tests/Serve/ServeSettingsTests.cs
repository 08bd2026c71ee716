using System.Net;
using Akka.Configuration;
using KvmActors.Host.Serve;
using KvmActors.Runtime.Config;
using Xunit;

namespace KvmActors.Tests.Serve;

public sealed class ServeSettingsTests
{
    [Fact]
    public void Host_settings_default_from_reference_conf_and_take_either_block_form()
    {
        var d = HostSettings.Default;
        Assert.Equal(256, d.MaxVms);
        Assert.Equal(512, d.MaxVcpusTotal);
        Assert.Equal(16UL << 30, d.MaxMemoryTotal);
        Assert.Equal(1 << 20, d.ConsoleRing);

        var s = HostSettings.From(ConfigurationFactory.ParseString("host { max-vms = 3 }\nkvmactors.host.max-memory-total = 2M"), "h.conf");
        Assert.Equal(3, s.MaxVms);
        Assert.Equal(2UL << 20, s.MaxMemoryTotal);
        Assert.Equal(512, s.MaxVcpusTotal);
    }

    [Fact]
    public void Host_settings_errors_name_the_key_and_the_file()
    {
        var e = Assert.Throws<ConfigException>(() => HostSettings.From(ConfigurationFactory.ParseString("host.max-vm = 3"), "h.conf"));
        Assert.Equal("host.max-vm", e.Key);
        Assert.Equal("h.conf", e.File);
        e = Assert.Throws<ConfigException>(() => HostSettings.From(ConfigurationFactory.ParseString("host.max-memory-total = lots"), "h.conf"));
        Assert.Equal("host.max-memory-total", e.Key);
    }

    [Theory]
    [InlineData("tcp:127.0.0.1:8080", "127.0.0.1", 8080)]
    [InlineData("127.0.0.1:0", "127.0.0.1", 0)]
    [InlineData("tcp:localhost:9000", "127.0.0.1", 9000)]
    [InlineData("tcp:[::1]:9000", "::1", 9000)]
    [InlineData("tcp:0.0.0.0:80", "0.0.0.0", 80)]
    public void Listen_addresses_parse(string text, string address, int port)
    {
        Assert.True(ServeCommand.TryParseListen(text, out var a, out var p));
        Assert.Equal(IPAddress.Parse(address), a);
        Assert.Equal(port, p);
    }

    [Theory]
    [InlineData("tcp:nonsense")]
    [InlineData("tcp:127.0.0.1:99999")]
    [InlineData("tcp:host.example:80")]
    public void Bad_listen_addresses_are_refused(string text) => Assert.False(ServeCommand.TryParseListen(text, out _, out _));

    [Fact]
    public void Posted_paths_may_not_leave_the_guest_dir()
    {
        var root = Directory.CreateTempSubdirectory("kvmactors-paths-").FullName;
        try
        {
            Directory.CreateDirectory(Path.Combine(root, "sub"));
            GuestPreparation.CheckPath("sub/x.bin", "guest.image.file", root);
            GuestPreparation.CheckPath("not-yet-there.bin", "guest.image.file", root);
            foreach (var bad in new[] { "../x", "sub/../../x", "/etc/passwd" })
                Assert.Equal(400, Assert.Throws<ProblemException>(() => GuestPreparation.CheckPath(bad, "guest.image.file", root)).Status);
            Directory.CreateSymbolicLink(Path.Combine(root, "out"), "/etc");
            Assert.Throws<ProblemException>(() => GuestPreparation.CheckPath("out/passwd", "guest.image.file", root));
            Assert.Throws<ProblemException>(() => GuestPreparation.CheckPath("out/no-such-file", "guest.image.file", root));
        }
        finally { Directory.Delete(root, recursive: true); }
    }
}

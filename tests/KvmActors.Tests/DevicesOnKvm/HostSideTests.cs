using System.Diagnostics;
using Akka.Actor;
using Akka.Configuration;
using KvmActors.Runtime.Config;
using KvmActors.Runtime.Devices;
using KvmActors.Sdk;
using KvmActors.Runtime.Vm;
using KvmActors.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace KvmActors.Tests.DevicesOnKvm;

/// <summary>The host side of devices: option values (HOCON nulls included) and file sinks that write through.</summary>
public sealed class HostSideTests(ITestOutputHelper output) : KvmTestKit(output)
{
    private static DeviceOptions Options(string hocon) =>
        new(ConfigurationFactory.ParseString(hocon), "guest.devices.d.options", "test.conf", Path.GetTempPath());

    // ---- DeviceOptions ----

    [Theory]
    [InlineData("sink = null")]
    [InlineData("sink = \"null\"")]
    public void A_hocon_null_string_reads_as_the_literal_null_by_default(string hocon)
    {
        var options = Options(hocon);
        Assert.Equal("null", options.GetString("sink"));
        Assert.Equal("null", options.GetString("sink", "stdout"));
        Assert.True(options.IsNull("sink"));
    }

    [Fact]
    public void A_hocon_null_string_can_mean_another_word_or_missing_per_key()
    {
        var options = Options("input = null");
        Assert.Equal("none", options.GetString("input", "stdin", whenNull: "none"));
        Assert.Equal("stdin", options.GetString("input", "stdin", whenNull: null));
        var missing = Assert.Throws<ConfigException>(() => options.GetString("input", whenNull: null));
        Assert.Equal("guest.devices.d.options.input", missing.Key);
        Assert.Contains("missing", missing.Message);
    }

    [Fact]
    public void Strings_missing_or_present_read_as_expected()
    {
        var options = Options("name = com1\nempty = \"\"\nnumber = 12");
        Assert.Equal("com1", options.GetString("name"));
        Assert.Equal("", options.GetString("empty"));
        Assert.Equal("12", options.GetString("number"));
        Assert.Equal("fallback", options.GetString("absent", "fallback"));
        Assert.False(options.IsNull("name"));
        Assert.False(options.IsNull("absent"));
        var e = Assert.Throws<ConfigException>(() => options.GetString("absent"));
        Assert.Equal("test.conf: guest.devices.d.options.absent: missing (this device needs it)", e.Message);
    }

    [Theory]
    [InlineData("sink = [stdout]", "not a list")]
    [InlineData("sink { path = x }", "not an object")]
    public void A_list_or_object_where_a_string_belongs_is_an_error_naming_the_key(string hocon, string problem)
    {
        var e = Assert.Throws<ConfigException>(() => Options(hocon).GetString("sink", "stdout"));
        Assert.Equal("guest.devices.d.options.sink", e.Key);
        Assert.Contains(problem, e.Message);
    }

    [Fact]
    public void Numbers_and_booleans_take_a_hocon_null_as_missing()
    {
        var options = Options("irq = null\nloud = null\nbad = x\nflag = maybe");
        Assert.Equal(4, options.GetInteger("irq", 4));
        Assert.True(options.GetBool("loud", true));
        Assert.Equal("guest.devices.d.options.irq", Assert.Throws<ConfigException>(() => options.GetInteger("irq")).Key);
        Assert.Contains("'x' is not a number", Assert.Throws<ConfigException>(() => options.GetInteger("bad")).Message);
        Assert.Contains("'maybe' is not a boolean", Assert.Throws<ConfigException>(() => options.GetBool("flag", false)).Message);
        Assert.Equal(0x3f8, Options("base = 0x3f8").GetInteger("base"));
    }

    [KvmFact]
    public void A_uart_with_sink_null_runs_and_drops_its_output()
    {
        // `sink = null` used to reach the device as a null string.
        var conf = SamplePluginTests.Conf(Guests.Seed, SinkName()) + "\nguest.devices.com1.options.sink = null\nguest.devices.com1.options.input = null";
        var ended = Run(Guest(conf, "guest.cpu.registers.rax=2", "guest.cpu.registers.rbx=2"));
        Assert.Equal(VmEndReason.Halted, ended.Reason);
    }

    // ---- file sinks ----

    [Fact]
    public void A_file_sink_has_each_write_in_the_file_before_the_write_returns()
    {
        var dir = Directory.CreateTempSubdirectory("kvmactors-sink-").FullName;
        try
        {
            var sink = HostIo.For(Sys).OpenOutput("file:out.txt", dir);
            try
            {
                sink.Write("ab"u8);
                Assert.Equal("ab", ReadShared(Path.Combine(dir, "out.txt")));
                sink.Write("c"u8);
                Assert.Equal("abc", ReadShared(Path.Combine(dir, "out.txt")));
            }
            finally { (sink as IDisposable)?.Dispose(); }
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [KvmFact]
    public void A_uart_file_sink_has_the_guests_output_while_the_vm_still_runs()
    {
        var dir = Directory.CreateTempSubdirectory("kvmactors-sink-").FullName;
        try
        {
            var file = Path.Combine(dir, "com1.txt");
            var conf = SamplePluginTests.Conf(DeviceGuests.PrintThenSpin("alive\n"), SinkName()) +
                       $"\nguest.devices.com1.options.sink = \"file:{file}\"";
            var (vm, owner) = Start(Guest(conf));
            Watch(vm);
            AwaitCondition(() => File.Exists(file) && ReadShared(file) == "alive\n", TimeSpan.FromSeconds(20));
            owner.ExpectNoMsg(TimeSpan.Zero); // still running: the bytes did not wait for the end

            vm.Tell(new StopVm("test"));
            Assert.Equal(VmEndReason.StoppedOnRequest, owner.ExpectMsg<VmEnded>(TimeSpan.FromSeconds(10)).Reason);
            ExpectTerminated(vm);
            Assert.Equal("alive\n", ReadShared(file));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [KvmFact]
    public void A_file_sink_keeps_the_guests_output_when_the_host_process_is_killed()
    {
        var dir = Directory.CreateTempSubdirectory("kvmactors-sink-").FullName;
        try
        {
            var file = Path.Combine(dir, "com1.txt");
            var image = DeviceGuests.PrintThenSpin("still here\n");
            using var p = Process.Start(Kvmactors.StartInfo("run", "hocon/guests/debug-exit.conf",
                "--set", $"guest.image.inline=\"{Guests.Hex(image)}\"",
                "--set", "guest.cpu.registers.rsp=0x8000",
                "--set", $"guest.devices.com1.options.sink=\"file:{file}\"",
                "--timeout", "60s"))!;
            try
            {
                var deadline = Stopwatch.StartNew();
                while (!(File.Exists(file) && ReadShared(file) == "still here\n"))
                {
                    if (p.HasExited) Assert.Fail($"kvmactors exited early ({p.ExitCode}): {p.StandardError.ReadToEnd()}");
                    Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(30), "the guest's output never reached the file");
                    Thread.Sleep(50);
                }
            }
            finally
            {
                if (!p.HasExited) p.Kill(entireProcessTree: true); // SIGKILL: no shutdown, no flush
                p.WaitForExit();
            }
            Assert.Equal("still here\n", ReadShared(file));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    private static string ReadShared(string path)
    {
        using var s = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        using var r = new StreamReader(s);
        return r.ReadToEnd();
    }
}

using KvmActors.Runtime.Config;
using KvmActors.Runtime.Vm;
using KvmActors.Sdk;
using KvmActors.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace KvmActors.Tests.DevicesOnKvm;

/// <summary>hocon/guests/debug-exit.conf and uart-echo.conf: the bytes they hold, and how they run.</summary>
public sealed class ExampleGuestTests(ITestOutputHelper output) : KvmTestKit(output)
{
    private static string Example(string name) => Path.Combine(RepoRoot.Path, "hocon", "guests", name);

    [Fact]
    public void Debug_exit_example_holds_the_bytes_the_tests_assemble()
    {
        var spec = GuestConfigLoader.LoadFile(Example("debug-exit.conf"));
        Assert.Equal(DeviceGuests.DebugExit(0x2a), spec.Machine.Image.Bytes);
        Assert.Contains(spec.Devices, d => d.Type == "debug-exit" && d.Ports.Single().First == 0xf4);
    }

    [Fact]
    public void Uart_echo_example_holds_the_bytes_the_tests_assemble()
    {
        var spec = GuestConfigLoader.LoadFile(Example("uart-echo.conf"));
        Assert.Equal(DeviceGuests.UartEcho((byte)'q'), spec.Machine.Image.Bytes);
        var com1 = spec.Devices.Single(d => d.Name == "com1");
        Assert.Equal("stdin", com1.Options.GetString("input"));
        Assert.Contains(spec.Devices, d => d.Type == "debug-exit" && d.Ports.Single().First == 0xf4);
    }

    [KvmFact]
    public void Debug_exit_example_ends_the_vm_with_status_85()
    {
        var sink = SinkName();
        var ended = Run(GuestConfigLoader.LoadFile(Example("debug-exit.conf"), [$"guest.devices.com1.options.sink=\"memory:{sink}\""]));

        Assert.Equal(VmEndReason.GuestExit, ended.Reason);
        Assert.Equal(85, ended.ExitStatus);
        Assert.Equal("42\n", SinkText(sink));
        Assert.Contains("0x2a", ended.Detail);
    }

    [KvmFact]
    public void Debug_exit_example_through_the_cli_exits_85()
    {
        var r = Kvmactors.Run("run", "hocon/guests/debug-exit.conf");

        Assert.Equal(85, r.ExitCode);
        Assert.Equal("42\n", r.Stdout);
        Assert.Contains("GuestExit", r.Stderr);
    }

    [KvmFact]
    public void The_guest_chooses_the_status_the_cli_returns()
    {
        // The same guest, writing 3 instead: status (3 << 1) | 1.
        var image = DeviceGuests.DebugExit(3);
        var r = Kvmactors.Run("run", "hocon/guests/debug-exit.conf", "--set", $"guest.image.inline=\"{Guests.Hex(image)}\"");

        Assert.Equal(7, r.ExitCode);
        Assert.Equal("3\n", r.Stdout);
    }
}

using KvmActors.Runtime.Devices;
using KvmActors.Sdk;
using KvmActors.Runtime.Vm;
using KvmActors.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace KvmActors.Tests.DevicesOnKvm;

/// <summary>
/// The 16550A driven by a real guest on KVM: divisor latch, LCR, FCR, IER, polling LSR, the interrupt
/// identification order in IIR, echo of bytes typed on the host, and the end through debug-exit.
/// </summary>
public sealed class UartGuestTests(ITestOutputHelper output) : KvmTestKit(output)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);

    private static string Conf(byte[] image, string sink, string input) =>
        SamplePluginTests.Conf(image, sink, $$"""
            devices.com1.options.input = "memory:{{input}}"
            devices.exit {
              type = debug-exit
              ports = ["0xf4"]
            }
            """);

    [KvmFact]
    public void A_guest_driver_sees_rx_data_before_thre_in_iir_echoes_host_input_and_exits_with_its_count()
    {
        var sink = SinkName();
        var inputName = SinkName();
        var input = HostIo.For(Sys).MemoryInput(inputName);
        var (vm, owner) = Start(Guest(Conf(DeviceGuests.UartDriver(stop: 0x04), sink, inputName)));
        Watch(vm);

        // The driver clears the FIFOs while it sets the UART up, as drivers do: type only once it is ready.
        AwaitCondition(() => SinkText(sink) == "ready\r\n", Patience);
        // One byte alone, so once the guest has read it only THRE is left pending.
        input.Push("h");
        AwaitCondition(() => SinkText(sink) == "ready\r\nh", Patience);
        input.Push("ello\x04");

        var ended = owner.ExpectMsg<VmEnded>(Patience);
        ExpectTerminated(vm);
        Assert.Equal(VmEndReason.GuestExit, ended.Reason);
        Assert.Equal((5 << 1) | 1, ended.ExitStatus); // five bytes echoed
        Assert.Equal("ready\r\nhello" + DeviceGuests.UartDriverReport, SinkText(sink));
    }

    [KvmFact]
    public void More_input_than_the_fifo_holds_is_echoed_whole_and_in_order()
    {
        var sink = SinkName();
        var inputName = SinkName();
        var input = HostIo.For(Sys).MemoryInput(inputName);
        var (vm, owner) = Start(Guest(Conf(DeviceGuests.UartDriver(stop: 0x04), sink, inputName)));
        Watch(vm);
        AwaitCondition(() => SinkText(sink) == "ready\r\n", Patience);

        var text = string.Concat(Enumerable.Range(0, 50).Select(i => (char)('A' + i % 26))); // three FIFOs' worth
        input.Push(text + "\x04");

        var ended = owner.ExpectMsg<VmEnded>(Patience);
        ExpectTerminated(vm);
        Assert.Equal(VmEndReason.GuestExit, ended.Reason);
        Assert.Equal((50 << 1) | 1, ended.ExitStatus);
        var output = SinkText(sink);
        Assert.StartsWith("ready\r\n" + text + "\r\nDLL 0c IIR c2 c1 c4 ", output);
    }

    [KvmFact]
    public void The_echo_guest_echoes_until_q_and_exits_through_debug_exit()
    {
        var sink = SinkName();
        var inputName = SinkName();
        // Its FIFOs stay off, so input may be typed before the guest starts: nothing is lost.
        HostIo.For(Sys).MemoryInput(inputName).Push("hello, world\nq ignored");

        var ended = Run(Guest(Conf(DeviceGuests.UartEcho(), sink, inputName)), Patience);

        Assert.Equal(VmEndReason.GuestExit, ended.Reason);
        Assert.Equal((13 << 1) | 1, ended.ExitStatus);
        Assert.Equal("hello, world\n", SinkText(sink));
        Assert.Contains("debug-exit port 0xf4", ended.Detail);
    }

    [KvmFact]
    public void The_uart_echo_example_through_the_cli_echoes_stdin_and_exits_with_the_guests_status()
    {
        var r = Kvmactors.RunWithStdin("hello\nq", "run", "hocon/guests/uart-echo.conf", "--timeout", "30s");

        Assert.Equal("hello\n", r.Stdout);
        Assert.Equal((6 << 1) | 1, r.ExitCode); // 13: six bytes echoed
        Assert.Contains("GuestExit", r.Stderr);
    }

    [KvmFact]
    public void The_uart_echo_example_ends_by_timeout_when_stdin_ends_without_q()
    {
        var r = Kvmactors.RunWithStdin("abc", "run", "hocon/guests/uart-echo.conf", "--timeout", "3s");

        Assert.Equal("abc", r.Stdout);
        Assert.Equal(124, r.ExitCode);
    }
}

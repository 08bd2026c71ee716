using Akka.Actor;
using KvmActors.Runtime.Vm;
using KvmActors.Sdk;
using KvmActors.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace KvmActors.Tests.Runtime;

/// <summary>The actor runtime end to end on /dev/kvm: VM actor, pinned vCPU actors, port routing, UART, halt controller.</summary>
public sealed class VmRuntimeTests(ITestOutputHelper output) : KvmTestKit(output)
{

    [KvmFact]
    public void Seed_guest_prints_4_and_the_vm_ends_halted()
    {
        var sink = SinkName();
        var ended = Run(Guest(RealModeGuest(Guests.Seed, sink, "cpu.registers.rax = 2\ncpu.registers.rbx = 2")));

        Assert.Equal(VmEndReason.Halted, ended.Reason);
        Assert.Equal("4\n", SinkText(sink));
        var vcpu = Assert.Single(ended.Vcpus);
        Assert.True(vcpu.Halted);
        Assert.Equal(2, vcpu.ExitsByPort[0x3f8]);
    }

    [KvmFact]
    public void Four_vcpus_each_print_their_line_on_their_own_dedicated_thread()
    {
        var sink = SinkName();
        var overrides = string.Join("\n", Enumerable.Range(0, 4).Select(i =>
            $"vcpu-overrides.\"{i}\".registers {{ rsi = {i}, rsp = 0x{0x8000 + i * 0x100:x} }}"));
        var ended = Run(Guest(RealModeGuest(Guests.SmpHello(), sink, "vcpus = 4\n" + overrides)));

        Assert.Equal(VmEndReason.Halted, ended.Reason);
        var lines = SinkText(sink).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(4, lines.Length);
        Assert.Equal(Enumerable.Range(0, 4).Select(i => $"hello from vCPU {i}"), lines.Order());

        Assert.Equal(4, ended.Vcpus.Count);
        Assert.All(ended.Vcpus, v =>
        {
            Assert.Equal($"vcpu-{v.VcpuId}", v.ThreadName);
            Assert.Equal(1, v.DistinctThreadsSeen); // the same thread for the whole run
            Assert.True(v.Halted);
        });
        Assert.Equal(4, ended.Vcpus.Select(v => v.NativeThreadId).Distinct().Count());
        Assert.DoesNotContain(Environment.ProcessId, ended.Vcpus.Select(v => v.NativeThreadId));
    }

    [KvmFact]
    public void In_from_the_uart_line_status_register_returns_the_devices_answer()
    {
        var sink = SinkName();
        var ended = Run(Guest(RealModeGuest(Guests.EchoPortByte(0x3fd), sink)));

        Assert.Equal(VmEndReason.Halted, ended.Reason);
        // An idle 16550A with an instant transmitter: THR empty (bit 5) and transmitter empty (bit 6).
        Assert.Equal([0x60], HostIoBytes(sink));
    }

    [KvmFact]
    public void In_from_an_unmapped_port_reads_all_ones_and_the_guest_goes_on()
    {
        var sink = SinkName();
        var ended = Run(Guest(RealModeGuest(Guests.EchoPortWord(0x99), sink)));

        Assert.Equal(VmEndReason.Halted, ended.Reason);
        Assert.Equal([0xff, 0xff], HostIoBytes(sink));
    }

    [KvmFact]
    public void Unmapped_port_in_strict_mode_ends_the_vm_as_a_guest_failure_with_registers_and_instruction()
    {
        var sink = SinkName();
        var ended = Run(Guest(RealModeGuest(Guests.EchoPortWord(0x99), sink, "unmapped-io = strict")));

        Assert.Equal(VmEndReason.GuestFailure, ended.Reason);
        var failure = Assert.IsType<GuestFailureInfo>(ended.Failure);
        Assert.Contains("unmapped port 0x99", failure.Explanation);
        Assert.Equal(0x99UL, failure.Registers.Rdx & 0xffff);
        Assert.Contains("in ax,dx", failure.FaultingInstruction);
        Assert.Empty(HostIoBytes(sink));
    }

    [KvmFact]
    public void Stop_request_ends_a_spinning_guest()
    {
        var (vm, owner) = Start(Guest(RealModeGuest(Guests.Spin, SinkName())));
        Watch(vm);
        vm.Tell(new StopVm("test"));
        var ended = owner.ExpectMsg<VmEnded>(TimeSpan.FromSeconds(5));
        Assert.Equal(VmEndReason.StoppedOnRequest, ended.Reason);
        ExpectTerminated(vm);
    }

    private byte[] HostIoBytes(string sink) => KvmActors.Sdk.HostIo.For(Sys).Memory(sink).Bytes;
}

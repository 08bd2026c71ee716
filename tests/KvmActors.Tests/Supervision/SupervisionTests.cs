using System.Diagnostics;
using Akka.Actor;
using KvmActors.Runtime.Vm;
using KvmActors.Sdk;
using KvmActors.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace KvmActors.Tests.Supervision;

/// <summary>Let it crash, lose nothing: injected faults in vCPU and device actors, restart limits, stop/pause/resume.</summary>
public sealed class SupervisionTests(ITestOutputHelper output) : KvmTestKit(output)
{
    private readonly ITestOutputHelper _output = output;

    private const string Text = "The quick brown fox jumps over the lazy dog.\n";


    [KvmFact]
    public void Vcpu_actor_restart_resumes_the_guest_and_no_byte_is_lost_or_duplicated()
    {
        var sink = SinkName();
        // Exit 25 is in the middle of the text (two exits a byte: LSR poll, THR write).
        var ended = Run(Guest(RealModeGuest(Guests.PrintText(Text, 2), sink, """faults.vcpus."0".throw-after-exits = 25""")));

        Assert.Equal(VmEndReason.Halted, ended.Reason);
        Assert.Equal(Text + Text, SinkText(sink));
        var vcpu = Assert.Single(ended.Vcpus);
        Assert.Equal(1, vcpu.Restarts);
        Assert.Equal(1, vcpu.DistinctThreadsSeen); // the restarted actor runs on the same pinned thread
        var failure = Assert.Single(ended.ActorFailures);
        Assert.Equal("vcpu-0", failure.Actor);
        Assert.True(failure.Restarted);
        Assert.Equal("InjectedFaultException", failure.Exception);
    }

    [KvmFact]
    public void A_fault_while_a_string_out_is_pending_delivers_every_byte_once()
    {
        var sink = SinkName();
        // The first exit is the rep outsb (all of it, or its first chunk): the actor fails before delivering it.
        var ended = Run(Guest(RealModeGuest(Guests.RepOutsb(Text), sink, """faults.vcpus."0".throw-after-exits = 1""")));

        Assert.Equal(VmEndReason.Halted, ended.Reason);
        Assert.Equal(Text, SinkText(sink));
        Assert.Equal(1, Assert.Single(ended.Vcpus).Restarts);
    }

    [KvmFact]
    public void Kvm_run_failing_with_an_injected_errno_is_supervised_and_the_guest_completes()
    {
        var sink = SinkName();
        var ended = Run(Guest(RealModeGuest(Guests.PrintText(Text), sink, """
            faults.vcpus."0" {
              kvm-run-errno = 14
              kvm-run-errno-after-exits = 10
            }
            """)));

        Assert.Equal(VmEndReason.Halted, ended.Reason);
        Assert.Equal(Text, SinkText(sink));
        var failure = Assert.Single(ended.ActorFailures);
        Assert.Equal("KvmException", failure.Exception);
        Assert.Contains("KVM_RUN failed: EFAULT", failure.Message);
    }

    [KvmFact]
    public void Device_actor_restart_keeps_the_uarts_state_and_drops_no_access()
    {
        var sink = SinkName();
        // Access 20 is mid-text; the scratch register written before it is read back after it.
        var ended = Run(Guest(RealModeGuest(Guests.PrintTextThenScratch(Text), sink, "faults.devices.com1.throw-on-access = 20")));

        Assert.Equal(VmEndReason.Halted, ended.Reason);
        Assert.Equal(Text + "\x5a", SinkText(sink));
        var failure = Assert.Single(ended.ActorFailures);
        Assert.Equal("device-com1", failure.Actor);
        Assert.True(failure.Restarted);
    }

    [KvmFact]
    public void Delayed_device_replies_slow_the_guest_but_lose_nothing()
    {
        var sink = SinkName();
        var ended = Run(Guest(RealModeGuest(Guests.PrintText("slow\n"), sink, "faults.devices.com1.reply-delay = 5ms")));
        Assert.Equal(VmEndReason.Halted, ended.Reason);
        Assert.Equal("slow\n", SinkText(sink));
    }

    [KvmFact]
    public void Exceeding_the_restart_limit_ends_the_vm_naming_the_actor_and_the_last_exception()
    {
        var ended = Run(Guest(RealModeGuest(Guests.PrintText(Text, 5), SinkName(), """
            faults.vcpus."0" {
              throw-after-exits = 7
              repeat = true
            }
            supervision.vcpu.max-restarts = 2
            """)));

        Assert.Equal(VmEndReason.Fault, ended.Reason);
        Assert.Contains("vcpu-0", ended.Detail);
        Assert.Contains("exceeded 2 restart(s)", ended.Detail);
        Assert.Contains("InjectedFaultException", ended.Detail);
        Assert.Equal(3, ended.ActorFailures.Count);
        Assert.Equal([true, true, false], ended.ActorFailures.Select(f => f.Restarted));
    }

    [KvmFact]
    public void Stop_vm_directive_ends_the_vm_at_the_first_device_failure()
    {
        var ended = Run(Guest(RealModeGuest(Guests.PrintText(Text), SinkName(), """
            faults.devices.com1.throw-on-access = 3
            supervision.device.directive = stop-vm
            """)));

        Assert.Equal(VmEndReason.Fault, ended.Reason);
        Assert.Contains("device 'com1'", ended.Detail);
        Assert.Contains("directive stop-vm", ended.Detail);
    }

    [KvmFact]
    public void A_spinning_guest_is_stopped_within_the_bound()
    {
        var (vm, owner) = Start(Guest(RealModeGuest(Guests.Spin, SinkName())));
        Watch(vm);
        // Let it get into its spin first: a pause is answered once the vCPU is out of KVM_RUN.
        vm.Tell(new PauseVm());
        ExpectMsg<VmPaused>(TimeSpan.FromSeconds(5));
        vm.Tell(new ResumeVm());
        ExpectMsg<VmResumed>();

        var sw = Stopwatch.StartNew();
        vm.Tell(new StopVm("test"));
        var ended = owner.ExpectMsg<VmEnded>(TimeSpan.FromSeconds(5));
        sw.Stop();
        _output.WriteLine($"stop of a spinning guest took {sw.Elapsed.TotalMilliseconds:0.0} ms");
        Assert.Equal(VmEndReason.StoppedOnRequest, ended.Reason);
        Assert.True(sw.Elapsed < Dilated(TimeSpan.FromMilliseconds(100)), $"stop took {sw.Elapsed.TotalMilliseconds:0.0} ms");
        ExpectTerminated(vm);
    }

    [KvmFact]
    public void A_paused_guest_makes_no_progress_and_resumed_its_output_continues_where_it_stopped()
    {
        var sink = SinkName();
        // 65535 times the text: far more than the test waits for; the test stops it.
        var (vm, owner) = Start(Guest(RealModeGuest(Guests.PrintText(Text, 65535), sink)));
        Watch(vm);
        AwaitCondition(() => SinkText(sink).Length > 0, TimeSpan.FromSeconds(5));

        vm.Tell(new PauseVm());
        ExpectMsg<VmPaused>(TimeSpan.FromSeconds(5));
        var atPause = SinkText(sink);
        owner.ExpectNoMsg(TimeSpan.FromMilliseconds(300));
        Assert.Equal(atPause, SinkText(sink)); // nothing ran while paused

        vm.Tell(new ResumeVm());
        ExpectMsg<VmResumed>();
        AwaitCondition(() => SinkText(sink).Length > atPause.Length + 2 * Text.Length, TimeSpan.FromSeconds(10));
        vm.Tell(new StopVm("test done"));
        var ended = owner.ExpectMsg<VmEnded>(TimeSpan.FromSeconds(5));
        ExpectTerminated(vm);

        Assert.Equal(VmEndReason.StoppedOnRequest, ended.Reason);
        var all = SinkText(sink);
        // The output went on from where it stopped: every byte once, in order.
        Assert.Equal(string.Concat(Enumerable.Repeat(Text, all.Length / Text.Length + 1))[..all.Length], all);
    }

    [KvmFact]
    public void Unmapped_mmio_in_strict_mode_ends_with_reason_registers_and_instruction()
    {
        var ended = Run(Guest(RealModeGuest(Guests.ReadUnbackedMemory(), SinkName(), "unmapped-io = strict")));
        Assert.Equal(VmEndReason.GuestFailure, ended.Reason);
        var f = Assert.IsType<GuestFailureInfo>(ended.Failure);
        Assert.Equal("KVM_EXIT_MMIO", f.ExitReason);
        Assert.Contains("unmapped MMIO address 0x20000", f.Explanation);
        Assert.Contains("mov al,[0]", f.FaultingInstruction);
        Assert.Equal(0x2000UL, f.SpecialRegisters.Ds.Selector);
    }

    [KvmFact]
    public void Unmapped_mmio_read_returns_all_ones_by_default()
    {
        var sink = SinkName();
        var ended = Run(Guest(RealModeGuest(Guests.ReadUnbackedMemory(), sink)));
        Assert.Equal(VmEndReason.Halted, ended.Reason);
        Assert.Equal([0xff], KvmActors.Sdk.HostIo.For(Sys).Memory(sink).Bytes);
    }

    [KvmFact]
    public void A_triple_faulting_guest_ends_as_a_guest_failure_with_registers_and_instruction()
    {
        // Flat protected mode with an empty IDT: the #UD of ud2 cannot be delivered, nor the #DF after it.
        // Loaded at 0x8000: in protected mode the runtime's GDT sits at 0x1000.
        var image = Guests.Assemble(32, 0x8000, a => { a.nop(); a.ud2(); });
        var ended = Run(Guest(RealModeGuest(image, SinkName(), "cpu.mode = protected"), "guest.image.load-address=0x8000", "guest.cpu.registers.rip=0x8000"));

        Assert.Equal(VmEndReason.GuestFailure, ended.Reason);
        var f = Assert.IsType<GuestFailureInfo>(ended.Failure);
        Assert.Equal("KVM_EXIT_SHUTDOWN", f.ExitReason);
        Assert.Contains("triple fault", f.Explanation);
        Assert.Equal(0x8001UL, f.Registers.Rip);
        Assert.Contains("32-bit @ 0x8001: ud2", f.FaultingInstruction);
        Assert.Contains("rip=0000000000008001", f.Describe());
    }

    [KvmFact]
    public void Escalate_ends_the_vm_then_fails_the_vm_actor_and_the_owner_hears_of_it_once()
    {
        EventFilter.Exception<VmChildFailedException>().ExpectOne(() =>
        {
            var (vm, owner) = Start(Guest(RealModeGuest(Guests.PrintText(Text), SinkName(), """
                faults.vcpus."0".throw-after-exits = 5
                supervision.vcpu.directive = escalate
                """)));
            Watch(vm);
            var ended = owner.ExpectMsg<VmEnded>(TimeSpan.FromSeconds(10));
            Assert.Equal(VmEndReason.Fault, ended.Reason);
            Assert.Contains("vcpu-0", ended.Detail);
            Assert.Contains("escalated", ended.Detail);
            ExpectTerminated(vm); // the guardian restarts it, and a restarted VM actor just stops
            owner.ExpectNoMsg(TimeSpan.FromMilliseconds(200));
        });
    }
}

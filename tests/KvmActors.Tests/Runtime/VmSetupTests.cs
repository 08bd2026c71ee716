using Akka.Actor;
using KvmActors.Runtime.Vm;
using KvmActors.Sdk;
using KvmActors.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace KvmActors.Tests.Runtime;

/// <summary>
/// Set-up of a VM: the devices start before any vCPU, a child that cannot be created ends the VM at once with
/// the reason, and a stop during set-up is honoured while vCPUs are still being created.
/// </summary>
public sealed class VmSetupTests(ITestOutputHelper output) : KvmTestKit(output)
{
    [KvmFact]
    public void A_bad_device_option_ends_the_vm_with_status_2_before_the_guest_prints_anything()
    {
        var sink = SinkName();
        var ended = Run(Guest(RealModeGuest(Guests.PrintText("hello\n"), sink, """
            devices.com2 {
              type = uart-16550
              ports = ["0x2f8-0x2ff"]
              options.irq = 2000
            }
            """)));

        Assert.Equal(VmEndReason.Fault, ended.Reason);
        Assert.Equal(2, ended.ExitStatus);
        Assert.Contains("guest.devices.com2.options.irq", ended.Detail);
        Assert.All(ended.Vcpus, v => Assert.Equal(0, v.Exits)); // no vCPU entered the guest
        Assert.Equal("", SinkText(sink));                      // and the guest printed nothing
    }

    [KvmFact]
    public void A_device_whose_constructor_throws_ends_the_vm_at_once_as_a_fault_naming_the_exception()
    {
        var ended = Run(Guest(RealModeGuest(Guests.Spin, SinkName(), $$"""
            devices.broken {
              type = "{{typeof(ThrowsAtStartDevice).AssemblyQualifiedName}}"
              ports = ["0x500"]
            }
            """)), within: TimeSpan.FromSeconds(10));

        Assert.Equal(VmEndReason.Fault, ended.Reason);
        Assert.Equal(1, ended.ExitStatus);
        Assert.Contains(ThrowsAtStartDevice.Message, ended.Detail);
        Assert.All(ended.Vcpus, v => Assert.Equal(0, v.Exits));
        var failure = Assert.Single(ended.ActorFailures);
        Assert.False(failure.Restarted); // it would fail the same way again
    }

    [KvmFact]
    public void A_stop_right_after_launch_of_a_254_vcpu_vm_ends_it_without_creating_every_vcpu()
    {
        var spec = Guest(RealModeGuest(Guests.Spin, SinkName()), "guest.vcpus=254");
        var (vm, owner) = Start(spec);
        vm.Tell(new StopVm("stopped during set-up"));

        var ended = owner.ExpectMsg<VmEnded>(TimeSpan.FromSeconds(15));
        Assert.Equal(VmEndReason.StoppedOnRequest, ended.Reason);
        Assert.True(ended.Vcpus.Count < 254, $"{ended.Vcpus.Count} vCPUs were created and stopped");
    }
}

/// <summary>A device that cannot be created: its constructor throws something other than a config error.</summary>
public sealed class ThrowsAtStartDevice : DeviceActor
{
    public const string Message = "this device cannot start";

    public ThrowsAtStartDevice(DeviceContext context) : base(context) => throw new InvalidOperationException(Message);
}

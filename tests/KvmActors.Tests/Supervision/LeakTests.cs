using Akka.Actor;
using KvmActors.Runtime.Kvm;
using KvmActors.Runtime.Vm;
using KvmActors.Sdk;
using KvmActors.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace KvmActors.Tests.Supervision;

/// <summary>Every fd, mapping and thread a VM owns is released when it ends, whatever the reason.</summary>
[Collection(SerialCollection.Name)]
public sealed class LeakTests(ITestOutputHelper output) : KvmTestKit(output)
{
    private readonly ITestOutputHelper _output = output;

    // Our fds (/dev/kvm, VM and vCPU fds) as SafeFd counts them, and as the kernel sees them: fds that
    // point at /dev/kvm or a kvm anon inode. The process's total fd count is not used: other tests' streams
    // are closed by finalizers on the GC's schedule.
    private static long OpenFds() => SafeFd.Live;
    private static int KvmFdsSeenByKernel() => Directory.GetFiles("/proc/self/fd").Count(fd =>
    {
        try { return new FileInfo(fd).LinkTarget is { } target && (target == "/dev/kvm" || target.StartsWith("anon_inode:kvm")); }
        catch (IOException) { return false; } // closed while we looked
    });
    // The .NET runtime's own threads (thread-pool workers, background GC, named ".NET ...") come and go
    // on the runtime's schedule: they are not ours to release, so they are left out of the count.
    // The whole fd table, counted after a full GC and its finalizers (so streams other tests dropped are closed).
    private static int ProcessFds()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        return Directory.GetFiles("/proc/self/fd").Length;
    }
    private static int Threads() => Directory.GetDirectories("/proc/self/task")
        .Count(t => !(File.Exists(Path.Combine(t, "comm")) && File.ReadAllText(Path.Combine(t, "comm")).StartsWith(".NET ")));
    // Guest RAM and kvm_run areas are mmap'd through SafeMapping, which counts them; the kernel's view
    // adds the vCPU mappings it names (anon_inode:kvm-vcpu). The process's total mapping count is not
    // used: the .NET GC maps and unmaps heap regions on its own schedule.
    private static long Mappings() => SafeMapping.Live;
    private static int KvmMappingsSeenByKernel() => File.ReadAllLines("/proc/self/maps").Count(l => l.Contains("anon_inode:kvm"));

    private static string ThreadNames() => string.Join(", ", Directory.GetDirectories("/proc/self/task")
        .Select(t => File.Exists(Path.Combine(t, "comm")) ? File.ReadAllText(Path.Combine(t, "comm")).Trim() : "?")
        .GroupBy(n => n).OrderBy(g => g.Key).Select(g => $"{g.Key} x{g.Count()}"));

    private static int VcpuThreads() => Directory.GetDirectories("/proc/self/task")
        .Count(t => File.Exists(Path.Combine(t, "comm")) && File.ReadAllText(Path.Combine(t, "comm")).StartsWith("vcpu-"));

    private static string Conf(byte[] image, string extra = "") => $$"""
        guest {
          memory = [
            { address = 0, size = 64K }
          ]
          image.inline = "{{Guests.Hex(image)}}"
          cpu.registers.rip = 0x1000
          cpu.registers.rax = 2
          cpu.registers.rbx = 2
          devices.com1.options.sink = null
          {{extra}}
        }
        """;

    [KvmFact]
    public void Hundreds_of_vms_ending_every_way_leave_fds_mappings_and_threads_where_they_started()
    {
        var kinds = new (string Name, KvmActors.Runtime.Config.GuestSpec Spec, VmEndReason Expected)[]
        {
            ("halts", Guest(Conf(Guests.Seed)), VmEndReason.Halted),
            ("two vcpus halt", Guest(Conf(Guests.Seed, "vcpus = 2")), VmEndReason.Halted),
            ("guest failure", Guest(Conf(Guests.EchoPortWord(0x99), "unmapped-io = strict")), VmEndReason.GuestFailure),
            ("stopped while spinning", Guest(Conf(Guests.Spin)), VmEndReason.StoppedOnRequest),
            ("actor fault", Guest(Conf(Guests.Seed, "faults.vcpus.\"0\".throw-after-exits = 1\nsupervision.vcpu.directive = stop-vm")), VmEndReason.Fault),
            ("irqchip, stopped while spinning", Guest(Conf(Guests.Spin, "irqchip = true")), VmEndReason.StoppedOnRequest),
            ("device restarted", Guest(Conf(Guests.Seed, "faults.devices.com1.throw-on-access = 1")), VmEndReason.Halted),
            ("device config error", Guest(Conf(Guests.Seed, "devices.com1.options.irq = 2000")), VmEndReason.Fault),
            ("stopped during set-up", Guest(Conf(Guests.Spin, "vcpus = 4")), StoppedAtOnce),
        };
        // Warm up: the first VMs grow Akka's and .NET's own thread pools; measure after that.
        foreach (var k in kinds) RunOne(k.Spec, k.Expected);
        AwaitAssert(() => Assert.Equal(0, VcpuThreads()), TimeSpan.FromSeconds(10));
        // The kernel-side checks below can see a VM's fds and mappings (so their zero at the end means something).
        var (spinning, spinOwner) = Start(kinds[3].Spec);
        AwaitAssert(() =>
        {
            Assert.True(KvmFdsSeenByKernel() >= 3, "a running VM holds /dev/kvm, a VM fd and a vCPU fd");
            Assert.True(KvmMappingsSeenByKernel() >= 1, "a running VM maps its vCPU's kvm_run");
        }, TimeSpan.FromSeconds(5));
        spinning.Tell(new StopVm("seen"));
        spinOwner.ExpectMsg<VmEnded>(TimeSpan.FromSeconds(10));
        AwaitAssert(() => Assert.Equal(0, VcpuThreads()), TimeSpan.FromSeconds(10));

        var fds = OpenFds();
        var processFds = ProcessFds();
        var threads = Threads();
        var names = ThreadNames();
        var maps = Mappings();

        const int rounds = 40; // 320 VMs
        for (var i = 0; i < rounds; i++)
            foreach (var k in kinds) RunOne(k.Spec, k.Expected);

        // Pinned vCPU threads end shortly after their actor stops (the dispatcher's shutdown delay).
        AwaitAssert(() =>
        {
            Assert.Equal(0, VcpuThreads());
            Assert.Equal(fds, OpenFds());
            Assert.Equal(0, KvmFdsSeenByKernel());
            Assert.True(ProcessFds() <= processFds, $"process fds: {ProcessFds()} now, {processFds} before");
            Assert.True(Threads() <= threads, $"threads: {Threads()} now ({ThreadNames()}), {threads} before ({names})");
            Assert.Equal(maps, Mappings());
            Assert.Equal(0, KvmMappingsSeenByKernel());
        }, TimeSpan.FromSeconds(20), TimeSpan.FromMilliseconds(200));
        _output.WriteLine($"after {rounds * kinds.Length} VMs: fds {OpenFds()} (before {fds}), process fds {ProcessFds()} (before {processFds}), threads {Threads()} (before {threads}), mappings {Mappings()} (before {maps})");
    }

    [KvmFact]
    public void By_the_time_a_vms_termination_is_observed_its_vcpu_threads_have_exited()
    {
        foreach (var (spec, stop) in new[] { (Guest(Conf(Guests.Spin, "vcpus = 3")), true), (Guest(Conf(Guests.Seed, "vcpus = 2")), false) })
        {
            var (vm, owner) = Start(spec);
            Watch(vm);
            if (stop)
            {
                AwaitCondition(() => VcpuThreads() == 3, TimeSpan.FromSeconds(10)); // spinning in KVM_RUN (this test runs alone)
                vm.Tell(new StopVm("thread test"));
            }
            var ended = owner.ExpectMsg<VmEnded>(TimeSpan.FromSeconds(10));
            ExpectTerminated(vm, TimeSpan.FromSeconds(10));
            // Each vCPU's native thread id, as the vCPU reported it: every one of them ran.
            var tids = ended.Vcpus.Select(v => v.NativeThreadId).ToList();
            Assert.Equal(spec.Machine.VcpuCount, tids.Count(t => t > 0));
            // No wait and no retry: the VM waits for its vCPU threads to end before it reports its end.
            Assert.All(tids, t => Assert.False(Directory.Exists($"/proc/self/task/{t}"), $"vCPU thread {t} outlived its VM"));
        }
    }

    // A stop told right after the launch, while the VM is still being set up.
    private const VmEndReason StoppedAtOnce = (VmEndReason)(-1);

    private void RunOne(KvmActors.Runtime.Config.GuestSpec spec, VmEndReason expected)
    {
        var (vm, owner) = Start(spec);
        if (expected == VmEndReason.StoppedOnRequest)
        {
            // Stopped while its vCPU spins in KVM_RUN (vCPU threads exist only while a VM runs: this test runs alone).
            AwaitCondition(() => VcpuThreads() > 0, TimeSpan.FromSeconds(10));
            vm.Tell(new StopVm("leak test"));
        }
        if (expected == StoppedAtOnce) vm.Tell(new StopVm("leak test, during set-up"));
        var ended = owner.ExpectMsg<VmEnded>(TimeSpan.FromSeconds(10));
        Assert.Equal(expected == StoppedAtOnce ? VmEndReason.StoppedOnRequest : expected, ended.Reason);
    }
}

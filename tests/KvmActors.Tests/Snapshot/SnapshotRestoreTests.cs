using Akka.Actor;
using KvmActors.Runtime.Config;
using KvmActors.Runtime.Snapshot;
using KvmActors.Runtime.Vm;
using KvmActors.Sdk;
using KvmActors.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace KvmActors.Tests.Snapshot;

/// <summary>Snapshot of a running VM through the VM actor, and a new VM restored from the directory, on /dev/kvm.</summary>
public sealed class SnapshotRestoreTests(ITestOutputHelper output) : SnapshotTestKit(output)
{
    private const string Line = "0123456789 the quick brown fox\n";
    // Long enough (several seconds) that the snapshot, asked for after the first lines, lands mid-run even on a
    // loaded machine; the expected output is known, so no uninterrupted run is needed.
    private const int Times = 10000;

    private GuestSpec Printer(string sink) => Guest(RealModeGuest(Guests.PrintText(Line, Times), sink));

    [KvmFact]
    public void A_restored_vm_carries_on_exactly_where_the_snapshot_was_taken()
    {
        var expected = string.Concat(Enumerable.Repeat(Line, Times));
        var first = SinkName();
        var dir = Path.Combine(SnapshotRoot, "s1");
        var (before, snap) = RunThenSnapshot(Printer(first), first, Line.Length * 40, dir);
        Assert.InRange(before.Length, Line.Length * 40, expected.Length - 1);
        Assert.True(snap.Stats.MemoryBytes == 64 * 1024, $"memory {snap.Stats.MemoryBytes}");

        // The restored VM's first bytes are exactly the ones that follow the snapshot point, mid-line or not.
        var after = RunRestoredFor(dir, SinkName(), Line.Length * 100);
        Assert.Equal(expected[..(before.Length + after.Length)], before + after);
    }

    [KvmFact]
    public void Two_vms_restored_from_one_snapshot_continue_identically()
    {
        var first = SinkName();
        var dir = Path.Combine(SnapshotRoot, "twice");
        var (before, _) = RunThenSnapshot(Printer(first), first, Line.Length * 20, dir);
        var a = RunRestoredFor(dir, SinkName(), Line.Length * 100);
        var b = RunRestoredFor(dir, SinkName(), Line.Length * 100);
        var common = Math.Min(a.Length, b.Length);
        Assert.Equal(a[..common], b[..common]);
        Assert.Equal(string.Concat(Enumerable.Repeat(Line, Times))[..(before.Length + common)], before + a[..common]);
    }

    [KvmFact]
    public void The_memory_file_is_sparse_and_the_state_names_the_devices_restored_fresh()
    {
        var sink = SinkName();
        var dir = Path.Combine(SnapshotRoot, "sparse");
        var spec = Guest(RealModeGuest(Guests.PrintText(Line, Times), sink).Replace("size = 64K", "size = 16M"));
        var (_, snap) = RunThenSnapshot(spec, sink, Line.Length * 5, dir);
        Assert.Equal(16L << 20, snap.Stats.MemoryBytes);
        // The guest touched a few pages: the data written is a small part of its 16 MiB.
        Assert.InRange(snap.Stats.DiskBytes, 4096, 1L << 20);
        var loaded = SnapshotFiles.Load(dir);
        Assert.Equal(16L << 20, new FileInfo(Path.Combine(dir, loaded.State.Memory[0].File)).Length);
        Assert.Contains(loaded.State.Devices, d => d.Name == "com1" && d.Restore == "saved-state");
    }
}

/// <summary>A snapshot whose vCPUs were given a CPUID feature this host's KVM cannot offer is refused before it runs.</summary>
public sealed class SnapshotCpuidTests(ITestOutputHelper output) : SnapshotTestKit(output)
{
    [KvmFact]
    public void A_snapshot_needing_a_cpu_feature_the_host_lacks_is_refused_naming_it()
    {
        var sink = SinkName();
        var (vm, owner) = Start(Guest(RealModeGuest(Guests.PrintText("cpuid\n", 60000), sink)));
        AwaitCondition(() => SinkText(sink).Length > 60, TimeSpan.FromSeconds(20));
        var dir = Path.Combine(SnapshotRoot, "s");
        vm.Tell(new SnapshotVm(dir, Resume: false), TestActor);
        ExpectMsg<VmSnapshotted>(TimeSpan.FromSeconds(20));
        vm.Tell(new StopVm("test"));
        owner.ExpectMsg<VmEnded>(TimeSpan.FromSeconds(10));

        // Leaf 1 ECX: a feature bit KVM_GET_SUPPORTED_CPUID does not offer here (OSXSAVE, bit 27, is the guest's own).
        using var kvm = KvmActors.Runtime.Kvm.KvmSystem.Open("/dev/kvm");
        var supported = kvm.GetSupportedCpuid().First(e => e.Function == 1).Ecx;
        var bit = Enumerable.Range(0, 31).First(b => b != 27 && (supported & (1u << b)) == 0);
        var loaded = SnapshotFiles.Load(dir);
        var vcpu = loaded.State.Vcpus[0];
        var cpuid = (byte[])vcpu.State.Cpuid.Clone();
        var entries = BitConverter.ToInt32(cpuid, 0);
        for (var i = 0; i < entries; i++)
        {
            var at = 8 + i * 40;
            if (BitConverter.ToUInt32(cpuid, at) != 1) continue;
            var ecx = BitConverter.ToUInt32(cpuid, at + 20) | (1u << bit);
            BitConverter.GetBytes(ecx).CopyTo(cpuid, at + 20);
        }
        var state = loaded.State with { Vcpus = [vcpu with { State = vcpu.State with { Cpuid = cpuid } }] };
        var restore = new VmRestore(state, (index, _, bytes) => SnapshotFiles.LoadRegion(loaded, index, bytes));
        var spec = GuestConfigLoader.FromSnapshot(loaded);
        var probe = CreateTestProbe();
        Sys.ActorOf(VmActor.Props(spec, probe.Ref, Settings, restore));
        var ended = probe.ExpectMsg<VmEnded>(TimeSpan.FromSeconds(20));
        Assert.Equal(VmEndReason.Fault, ended.Reason);
        Assert.Equal(2, ended.ExitStatus);
        Assert.Contains("cannot run the snapshot's vCPU 0", ended.Detail);
        Assert.Contains("leaf 0x1", ended.Detail);
        Assert.Empty(ended.Vcpus); // refused before any vCPU was created
    }
}

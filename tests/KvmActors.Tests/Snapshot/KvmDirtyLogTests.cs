using KvmActors.Runtime.Kvm;
using KvmActors.Runtime.Memory;
using KvmActors.Tests.Boot;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace KvmActors.Tests.Snapshot;

/// <summary>GuestMemory's dirty-page log (KVM_MEM_LOG_DIRTY_PAGES + KVM_GET_DIRTY_LOG) on real KVM.</summary>
public sealed class KvmDirtyLogTests
{
    // Writes pages 5, 7 and 9 (the last not at its start), stops at an OUT; then writes page 6, stops again.
    private static byte[] Guest() => KvmSnapshotGuests.Assemble(a =>
    {
        a.mov(__byte_ptr[0x5000], 1);
        a.mov(__byte_ptr[0x7000], 1);
        a.mov(__word_ptr[0x9123], 0x4242);
        a.mov(al, (byte)'1');
        KvmSnapshotGuests.OutAl(a);
        a.mov(__byte_ptr[0x6000], 2);
        a.mov(al, (byte)'2');
        KvmSnapshotGuests.OutAl(a);
        a.hlt();
    });

    [KvmFact]
    public void Take_dirty_pages_reports_exactly_the_pages_the_guest_wrote_since_the_last_take()
    {
        using var vm = BootTestVm.Create(extraRegions: [new MemoryRegionSpec("rom", 0x300000, 0x10000, true)]);
        vm.Memory.Write(KvmSnapshotGuests.Entry, Guest());
        KvmSnapshotGuests.EnterRealMode(vm.Vcpu);
        vm.Memory.StartDirtyLog();
        Assert.True(vm.Memory.DirtyLogging);
        vm.Memory.Write(0xa000, [1, 2, 3]); // the host's write: KVM does not log it

        Assert.Equal(KvmExitReason.Io, KvmSnapshotGuests.RunToExit(vm.Vcpu));
        var first = Assert.Single(vm.Memory.TakeDirtyPages()); // the ROM is not logged
        Assert.Equal(0, first.RegionIndex);
        Assert.Equal("ram", first.Spec.Name);
        Assert.Equal([5UL, 7UL, 9UL], first.DirtyPages());
        Assert.Equal(3, first.DirtyPageCount);

        Assert.Equal(0, Assert.Single(vm.Memory.TakeDirtyPages()).DirtyPageCount);

        Assert.True(vm.Vcpu.CompletePendingExit());
        Assert.Equal(KvmExitReason.Io, KvmSnapshotGuests.RunToExit(vm.Vcpu));
        Assert.Equal([6UL], Assert.Single(vm.Memory.TakeDirtyPages()).DirtyPages());

        vm.Memory.StopDirtyLog();
        Assert.False(vm.Memory.DirtyLogging);
        Assert.Throws<InvalidOperationException>(() => vm.Memory.TakeDirtyPages());
    }

    [Fact]
    public void Dirty_log_needs_a_vm_and_region_bytes_are_the_region()
    {
        using var memory = GuestMemory.Create(null, [new MemoryRegionSpec("ram", 0, 0x4000, false)]);
        Assert.Throws<InvalidOperationException>(() => memory.StartDirtyLog());
        Assert.Throws<InvalidOperationException>(() => memory.TakeDirtyPages());
        memory.Write(0x2001, [0x5a]);
        var bytes = memory.RegionBytes(0);
        Assert.Equal(0x4000, bytes.Length);
        Assert.Equal(0x5a, bytes[0x2001]);
        bytes[0x3000] = 0x77;
        var back = new byte[1];
        memory.Read(0x3000, back);
        Assert.Equal(0x77, back[0]);
    }
}

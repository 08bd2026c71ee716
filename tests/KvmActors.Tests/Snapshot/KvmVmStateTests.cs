using KvmActors.Runtime.Kvm;
using KvmActors.Runtime.Snapshot;
using Xunit;
using Xunit.Abstractions;
using static Iced.Intel.AssemblerRegisters;

namespace KvmActors.Tests.Snapshot;

/// <summary>VmStateIo (and the LAPIC in VcpuStateIo) on real KVM with the in-kernel irqchip and PIT.</summary>
public sealed class KvmVmStateTests(ITestOutputHelper output)
{
    private const ulong IoapicEntry = 0x0000_0000_0001_0033; // pin 3: vector 0x33, masked, fixed, physical dest 0

    // The guest programs the in-kernel devices itself: PIT channel 0 as a rate generator (mode 2, lo/hi byte) with
    // count 0x2e9c, and the master PIC's mask register; then stops at an OUT to 0x3f8.
    private static byte[] Guest() => KvmSnapshotGuests.Assemble(a =>
    {
        a.mov(al, 0x34); a.@out(0x43, al);
        a.mov(al, 0x9c); a.@out(0x40, al);
        a.mov(al, 0x2e); a.@out(0x40, al);
        a.mov(al, 0xa5); a.@out(0x21, al);
        a.mov(al, (byte)'P');
        KvmSnapshotGuests.OutAl(a);
        a.jmp(a.CreateLabel()); // never reached in these tests
    });

    [KvmFact]
    public void Irqchip_pit_lapic_and_clock_move_to_a_second_vm()
    {
        using var first = IrqchipTestVm.Create();
        first.Memory.Write(KvmSnapshotGuests.Entry, Guest());
        KvmSnapshotGuests.EnterRealMode(first.Vcpu);
        var ioapic = first.Vm.GetIrqchip(KvmIrqchipId.Ioapic);
        var table = ioapic.Ioapic;
        unsafe { table.RedirTbl[3] = IoapicEntry; }
        ioapic.Ioapic = table;
        first.Vm.SetIrqchip(ioapic);
        Assert.Equal(KvmExitReason.Io, KvmSnapshotGuests.RunToExit(first.Vcpu));
        Assert.True(first.Vcpu.CompletePendingExit());

        var vcpuState = VcpuStateIo.Capture(first.Kvm, first.Vcpu, hasIrqchip: true);
        var vmState = VmStateIo.Capture(first.Vm, hasIrqchip: true);
        Assert.NotNull(vcpuState.Lapic);
        var savedClock = System.Runtime.InteropServices.MemoryMarshal.Read<KvmClockData>(vmState.Clock).Clock;
        Assert.Equal(0x2e9cu, first.Vm.GetPit2().Channel0.Count);

        using var second = IrqchipTestVm.Create();
        first.Memory.RegionBytes(0).CopyTo(second.Memory.RegionBytes(0));
        var refused = VcpuStateIo.Apply(second.Vcpu, vcpuState);
        output.WriteLine($"MSRs refused on restore with an irqchip: {string.Join(", ", refused.Select(i => $"0x{i:x}"))}");
        VmStateIo.Apply(second.Vm, vmState);

        var again = VmStateIo.Capture(second.Vm, hasIrqchip: true);
        Assert.Equal(vmState.PicMaster, again.PicMaster);
        Assert.Equal(vmState.PicSlave, again.PicSlave);
        Assert.Equal(vmState.Ioapic, again.Ioapic);
        Assert.Equal(0xa5, second.Vm.GetIrqchip(KvmIrqchipId.PicMaster).Pic.Imr);
        var restored = second.Vm.GetIrqchip(KvmIrqchipId.Ioapic).Ioapic;
        unsafe { Assert.Equal(IoapicEntry, restored.RedirTbl[3]); }
        var pit = second.Vm.GetPit2().Channel0;
        Assert.Equal(0x2e9cu, pit.Count);
        Assert.Equal(2, pit.Mode);
        Assert.True(second.Vm.GetClock().Clock >= savedClock, "kvmclock continues from the saved value");

        var vcpuAgain = VcpuStateIo.Capture(second.Kvm, second.Vcpu, hasIrqchip: true);
        Assert.Equal(vcpuState.Lapic, vcpuAgain.Lapic);
        Assert.Equal(vcpuState.MpState, vcpuAgain.MpState);
        Assert.Equal(vcpuState.Regs, vcpuAgain.Regs);
    }

    [KvmFact]
    public void Apply_refuses_a_chip_saved_under_another_chip_id_and_a_short_clock()
    {
        using var vm = IrqchipTestVm.Create();
        var state = VmStateIo.Capture(vm.Vm, hasIrqchip: true);
        var swapped = Assert.Throws<SnapshotFormatException>(() => VmStateIo.Apply(vm.Vm, state with { PicMaster = state.PicSlave }));
        Assert.Contains("PicMaster", swapped.Message);
        Assert.Throws<SnapshotFormatException>(() => VmStateIo.Apply(vm.Vm, state with { Clock = state.Clock[..40] }));
        Assert.Throws<SnapshotFormatException>(() => VmStateIo.Apply(vm.Vm, state with { Ioapic = null }));
    }
}

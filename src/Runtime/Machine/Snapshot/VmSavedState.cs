using KvmActors.Runtime.Kvm;

namespace KvmActors.Runtime.Snapshot;

/// <summary>
/// The VM-wide KVM state: with an in-kernel irqchip each chip as its whole struct kvm_irqchip (chip_id included) and
/// the PIT as struct kvm_pit_state2; always kvmclock as struct kvm_clock_data.
/// </summary>
public sealed record VmSavedState(byte[]? PicMaster, byte[]? PicSlave, byte[]? Ioapic, byte[]? Pit2, byte[] Clock);

public static class VmStateIo
{
    /// <summary>
    /// After every vCPU is paused. <paramref name="hasIrqchip"/>: the VM has KVM_CREATE_IRQCHIP and KVM_CREATE_PIT2
    /// (as Machine creates them together).
    /// </summary>
    public static VmSavedState Capture(KvmVm vm, bool hasIrqchip) => new(
        PicMaster: hasIrqchip ? StructBytes.Of(vm.GetIrqchip(KvmIrqchipId.PicMaster)) : null,
        PicSlave: hasIrqchip ? StructBytes.Of(vm.GetIrqchip(KvmIrqchipId.PicSlave)) : null,
        Ioapic: hasIrqchip ? StructBytes.Of(vm.GetIrqchip(KvmIrqchipId.Ioapic)) : null,
        Pit2: hasIrqchip ? StructBytes.Of(vm.GetPit2()) : null,
        Clock: StructBytes.Of(vm.GetClock()));

    /// <summary>
    /// After the vCPUs were restored (the IOAPIC's routing is pushed to existing vCPUs). Order: the PICs and the
    /// IOAPIC, then the PIT (its output drives IRQ 0 of those), then kvmclock last, closest to resuming.
    /// The clock resumes at the saved value: the flags are cleared, so KVM does not add the real time that passed
    /// while the VM was saved (KVM_CLOCK_REALTIME), like a paused VM that is continued.
    /// </summary>
    public static void Apply(KvmVm vm, VmSavedState state)
    {
        var chips = new[] { (KvmIrqchipId.PicMaster, state.PicMaster), (KvmIrqchipId.PicSlave, state.PicSlave), (KvmIrqchipId.Ioapic, state.Ioapic) }
            .Where(c => c.Item2 is not null)
            .Select(c => Chip(c.Item1, c.Item2!))
            .ToArray();
        var pit = StructBytes.ReadOptional<KvmPitState2>(state.Pit2, "PIT (struct kvm_pit_state2)");
        var clock = StructBytes.Read<KvmClockData>(state.Clock, "kvmclock (struct kvm_clock_data)");
        if (chips.Length is not (0 or 3))
            throw new SnapshotFormatException("saved irqchip state must have both PICs and the IOAPIC, or none");

        foreach (var chip in chips) vm.SetIrqchip(chip);
        if (pit is { } p) vm.SetPit2(p);
        vm.SetClock(clock with { Flags = 0, Realtime = 0, HostTsc = 0 });
    }

    private static KvmIrqchip Chip(KvmIrqchipId id, byte[] bytes)
    {
        var chip = StructBytes.Read<KvmIrqchip>(bytes, $"{id} (struct kvm_irqchip)");
        if (chip.ChipId != (uint)id)
            throw new SnapshotFormatException($"saved {id} state names chip {chip.ChipId}, expected {(uint)id}");
        return chip;
    }
}

using KvmActors.Runtime.Kvm;
using KvmActors.Tests.Boot;
using Xunit;

namespace KvmActors.Tests.Kvm;

/// <summary>The debug ioctls on real KVM: single step, a DR0 breakpoint, and KVM_TRANSLATE.</summary>
public sealed unsafe class KvmDebugTests
{
    private const ulong Entry = 0x1000;

    // Real mode at 0000:1000: nop; nop; nop; hlt.
    private static BootTestVm RealModeVm()
    {
        var vm = BootTestVm.Create();
        vm.Memory.Write(Entry, [0x90, 0x90, 0x90, 0xf4]);
        var s = vm.Vcpu.GetSregs();
        s.Cs.Base = 0; s.Cs.Selector = 0;
        vm.Vcpu.SetSregs(s);
        var r = vm.Vcpu.GetRegs();
        r.Rip = Entry; r.Rflags = 2;
        vm.Vcpu.SetRegs(r);
        return vm;
    }

    private static KvmExitReason RunToExit(BootTestVm vm)
    {
        while (vm.Vcpu.Run() != 0) { }
        return vm.Vcpu.ExitReason;
    }

    [KvmFact]
    public void Single_step_exits_after_each_instruction()
    {
        using var vm = RealModeVm();
        vm.Vcpu.SetGuestDebug(GuestDebugFlags.Enable | GuestDebugFlags.SingleStep);
        Assert.Equal(KvmExitReason.Debug, RunToExit(vm));
        Assert.Equal(Entry + 1, vm.Vcpu.GetRegs().Rip);
        Assert.Equal(KvmExitReason.Debug, RunToExit(vm));
        Assert.Equal(Entry + 2, vm.Vcpu.GetRegs().Rip);
        vm.Vcpu.SetGuestDebug(GuestDebugFlags.None);
        Assert.Equal(KvmExitReason.Hlt, RunToExit(vm));
    }

    [KvmFact]
    public void Hardware_breakpoint_in_dr0_stops_before_the_instruction()
    {
        using var vm = RealModeVm();
        // DR7 bit 0 (L0) enables DR0 as an execute breakpoint (R/W0 = 00, LEN0 = 00).
        vm.Vcpu.SetGuestDebug(GuestDebugFlags.Enable | GuestDebugFlags.UseHardwareBreakpoints, [Entry + 2], dr7: 0x1);
        Assert.Equal(KvmExitReason.Debug, RunToExit(vm));
        Assert.Equal(Entry + 2, vm.Vcpu.GetRegs().Rip);
        var dr6 = *(ulong*)(vm.Vcpu.RunArea + KvmRunLayout.Union + 16); // kvm_debug_exit_arch.dr6
        Assert.Equal(1UL, dr6 & 0xf); // B0: DR0 matched
    }

    [KvmFact]
    public void Translate_in_real_mode_is_the_identity()
    {
        using var vm = RealModeVm();
        var t = vm.Vcpu.Translate(0x1234);
        Assert.True(t.Valid);
        Assert.Equal(0x1234UL, t.Physical);
    }

    [KvmFact]
    public void Data_breakpoint_probe_answers_and_is_cached()
    {
        // Whatever this KVM does (hardware KVM traps data breakpoints; the software KVM here emulates CPL0 code and
        // does not), the probe runs a real guest and answers the same each time.
        var first = KvmDebugProbe.DataBreakpointsTrap;
        Assert.Equal(first, KvmDebugProbe.DataBreakpointsTrap);
    }
}

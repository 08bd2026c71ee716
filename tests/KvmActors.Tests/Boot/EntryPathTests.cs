using KvmActors.Runtime.Boot;
using Xunit;

namespace KvmActors.Tests.Boot;

/// <summary>One entry path: a bare vCPU entered with CpuSetup.Enter starts as a VM's vCPU does (Machine → CpuState).</summary>
public sealed class EntryPathTests
{
    [KvmFact]
    public void Real_mode_entry_above_64_KiB_runs_with_cs_set_from_the_entry_as_in_a_vm()
    {
        using var vm = BootTestVm.Create();
        CpuSetup.Enter(vm.Vcpu, vm.Memory, CpuMode.Real, 0x12340);
        var s = vm.Vcpu.GetSregs();
        Assert.Equal(0x1234, s.Cs.Selector);
        Assert.Equal(0x12340UL, s.Cs.Base);
        Assert.Equal(0UL, vm.Vcpu.GetRegs().Rip);
        Assert.Equal(0x7000UL, vm.Vcpu.GetRegs().Rsp);
    }
}

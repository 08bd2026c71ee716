using KvmActors.Runtime.Memory;

namespace KvmActors.Runtime.Kvm;

/// <summary>
/// What this KVM's guest debugging can do, found once by running a tiny guest: hardware KVM traps data
/// breakpoints (DR7 R/W = write) in KVM_SET_GUEST_DEBUG; a software KVM that emulates CPL0 code instruction by
/// instruction may not (measured here: the store completes and the vCPU runs on to HLT). The gdb stub then leaves
/// watchpoints to gdb, which single-steps and compares.
/// </summary>
public static class KvmDebugProbe
{
    private static readonly Lazy<bool> Probe = new(Run);

    /// <summary>Whether a write to a watched address ends KVM_RUN with KVM_EXIT_DEBUG.</summary>
    public static bool DataBreakpointsTrap => Probe.Value;

    private static bool Run()
    {
        try
        {
            using var kvm = KvmSystem.Open();
            using var vm = kvm.CreateVm();
            using var memory = GuestMemory.Create(vm, [new MemoryRegionSpec("probe", 0, 0x3000, false)]);
            using var vcpu = vm.CreateVcpu(0);
            // Real mode at 0000:1000: mov byte [0x2001], 0x5a; hlt.
            memory.Write(0x1000, [0xc6, 0x06, 0x01, 0x20, 0x5a, 0xf4]);
            var s = vcpu.GetSregs();
            s.Cs.Base = 0;
            s.Cs.Selector = 0;
            vcpu.SetSregs(s);
            var r = vcpu.GetRegs();
            r.Rip = 0x1000;
            r.Rflags = 2;
            vcpu.SetRegs(r);
            // DR0 = 0x2001, L0, R/W0 = 01 (write), LEN0 = 00 (1 byte).
            vcpu.SetGuestDebug(GuestDebugFlags.Enable | GuestDebugFlags.UseHardwareBreakpoints, [0x2001], dr7: 0x1 | (1UL << 16));
            for (var i = 0; i < 16; i++)
            {
                if (vcpu.Run() != 0) continue; // EINTR: again
                return vcpu.ExitReason == KvmExitReason.Debug;
            }
            return false;
        }
        catch (KvmException)
        {
            return false; // no usable KVM: nothing to probe; the VM's own set-up reports that
        }
    }
}

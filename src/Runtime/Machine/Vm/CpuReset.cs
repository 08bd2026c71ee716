using KvmActors.Runtime.Boot;
using KvmActors.Runtime.Kvm;

namespace KvmActors.Runtime.Vm;

/// <summary>
/// A vCPU put back as a reset leaves it (Intel SDM vol. 3, "Processor state following power-up, reset or INIT"),
/// for the S3 resume path: the BSP goes on in real mode where firmware would have jumped, an AP waits for INIT/SIPI.
/// The APIC base (and so the BSP flag) is kept; the caller finishes any exit KVM still holds first.
/// </summary>
public static class CpuReset
{
    public const uint MpStateRunnable = 0;

    /// <summary>
    /// The BSP in real mode at <paramref name="entry"/> as firmware's far jump to the ACPI waking vector gets there
    /// (CS = entry &gt;&gt; 4, IP = entry &amp; 0xf, the data segments 0): paging, long mode, CR4 and EFER off, the
    /// descriptor tables at their reset values, general registers 0, RFLAGS 0x2 (interrupts off).
    /// </summary>
    public static void ToRealMode(KvmVcpu vcpu, ulong entry)
    {
        if (entry >= 0x100000)
            throw new BootSetupException($"a real-mode waking vector must lie below 1 MiB (got 0x{entry:x})");
        var s = CpuSetup.EntrySregs(vcpu.GetSregs(), CpuMode.Real);
        var cs = (ushort)(entry >> 4);
        s.Cs.Selector = cs;
        s.Cs.Base = (ulong)cs << 4;
        s.Cr0 = 0x10; // ET only: caches on (CD/NW clear), as firmware leaves them before jumping
        s.Cr2 = s.Cr3 = s.Cr4 = s.Efer = 0;
        s.Gdt = new KvmDtable { Base = 0, Limit = 0xffff };
        s.Idt = new KvmDtable { Base = 0, Limit = 0x3ff };
        s.Tr = new KvmSegment { Limit = 0xffff, Type = CpuSetup.BusyTssType, Present = 1 };
        s.Ldt = new KvmSegment { Limit = 0xffff, Type = 2, Present = 1 };
        vcpu.SetSregs(s);
        vcpu.SetRegs(new KvmRegs { Rip = entry & 0xf, Rflags = 0x2 });
        vcpu.SetMpState(MpStateRunnable);
    }

    /// <summary>An AP after a reset: waiting for INIT/SIPI (its next KVM_RUN blocks in the kernel until then).</summary>
    public static void ToWaitForSipi(KvmVcpu vcpu) => vcpu.SetMpState(Machine.MpStateUninitialized);
}

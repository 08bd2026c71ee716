using System.Runtime.InteropServices;
using KvmActors.Runtime.Kvm;

namespace KvmActors.Runtime.Snapshot;

public sealed record MsrValue(uint Index, ulong Value);

/// <summary>
/// One vCPU's complete KVM state. Raw kernel structs as bytes (serialised with System.Text.Json: byte[] becomes
/// base64), so the format is the KVM API's own: <see cref="Regs"/> struct kvm_regs, <see cref="Sregs"/> kvm_sregs,
/// <see cref="Xsave"/> the XSAVE area (KVM_GET_XSAVE/XSAVE2) or, on a KVM without XSAVE, <see cref="Fpu"/> kvm_fpu,
/// <see cref="Xcrs"/> kvm_xcrs, <see cref="DebugRegs"/> kvm_debugregs, <see cref="Lapic"/> kvm_lapic_state (in-kernel
/// irqchip only), <see cref="VcpuEvents"/> kvm_vcpu_events, <see cref="Cpuid"/> struct kvm_cpuid2 with its entries.
/// </summary>
public sealed record VcpuSavedState(int VcpuId, uint MpState, byte[] Regs, byte[] Sregs, byte[]? Xsave, byte[]? Fpu,
    byte[]? Xcrs, byte[]? DebugRegs, byte[]? Lapic, IReadOnlyList<MsrValue> Msrs, byte[] VcpuEvents, byte[] Cpuid);

public static class VcpuStateIo
{
    /// <summary>IA32_TSC_DEADLINE: KVM_SET_LAPIC cancels the LAPIC timer, so this one is written after the LAPIC.</summary>
    public const uint TscDeadlineMsr = 0x6e0;

    /// <summary>Bigger than any XSAVE layout (AMX's is about 11 KiB): a larger saved area is a corrupt file.</summary>
    private const int MaxXsaveBytes = 1 << 20;

    /// <summary>
    /// Read every piece (the vCPU must be out of KVM_RUN and its last exit completed — <see cref="KvmVcpu.CompletePendingExit"/>:
    /// the caller does that). <paramref name="hasIrqchip"/>: the VM has an in-kernel irqchip, so the LAPIC is included.
    /// MSRs of KVM's index list that this vCPU cannot read are left out. The CPUID kept is the table the VMM gave the
    /// vCPU (<see cref="KvmVcpu.GivenCpuid"/>), the vCPU model, rather than KVM_GET_CPUID2's answer, which adds KVM's
    /// own bits (here even host features KVM_GET_SUPPORTED_CPUID does not offer, which would fail the host check);
    /// KVM_GET_CPUID2 only where this process gave none.
    /// </summary>
    public static VcpuSavedState Capture(KvmSystem kvm, KvmVcpu vcpu, bool hasIrqchip)
    {
        var vm = vcpu.Vm;
        var msrs = vcpu.GetMsrs(kvm.MsrIndexList, out _);
        return new VcpuSavedState(
            VcpuId: vcpu.Id,
            MpState: vcpu.GetMpState(),
            Regs: StructBytes.Of(vcpu.GetRegs()),
            Sregs: StructBytes.Of(vcpu.GetSregs()),
            Xsave: vm.HasXsave ? vcpu.GetXsave() : null,
            Fpu: vm.HasXsave ? null : StructBytes.Of(vcpu.GetFpu()),
            Xcrs: vm.CheckExtension(KvmCap.Xcrs) > 0 ? StructBytes.Of(vcpu.GetXcrs()) : null,
            DebugRegs: vm.CheckExtension(KvmCap.DebugRegs) > 0 ? StructBytes.Of(vcpu.GetDebugRegs()) : null,
            Lapic: hasIrqchip ? StructBytes.Of(vcpu.GetLapic()) : null,
            Msrs: msrs.Select(m => new MsrValue(m.Index, m.Data)).ToArray(),
            VcpuEvents: StructBytes.Of(vcpu.GetVcpuEvents()),
            Cpuid: CpuidBytes(vcpu.GivenCpuid ?? vcpu.GetCpuid()));
    }

    /// <summary>
    /// Write a saved state into a freshly created vCPU (no KVM_RUN yet). Every piece is checked first, so a corrupt
    /// state throws <see cref="SnapshotFormatException"/> before any ioctl. Returns the MSR indexes KVM refused
    /// (the caller logs them; e.g. 0x10a ARCH_CAPABILITIES on some KVMs).
    /// </summary>
    /// <remarks>
    /// The order follows the dependencies in Documentation/virt/kvm/api.rst and KVM's own checks (QEMU restores in
    /// the same order):
    /// 1. CPUID (KVM_SET_CPUID2) first: KVM checks SREGS (CR4 bits, CR3 against MAXPHYADDR), XCR0 and the XSAVE
    ///    components (leaf 0xD) and feature-gated MSRs against the guest's CPUID, and refuses a changed CPUID once
    ///    the vCPU has run.
    /// 2. SREGS: control registers, EFER and the APIC base, which KVM_SET_LAPIC re-applies (x2APIC mode decides how
    ///    the LAPIC page is read), so before the LAPIC; and before the MSRs so an MSR that both carry ends with the
    ///    MSR list's value.
    /// 3. REGS (no dependency; after SREGS like QEMU).
    /// 4. XSAVE (or FPU without XSAVE), then 5. XCRS: both are validated against the CPUID's XSAVE features only.
    /// 6. MSRs (all but IA32_TSC_DEADLINE): after CPUID and SREGS, for the reasons above.
    /// 7. LAPIC, after the APIC base is in place.
    /// 8. IA32_TSC_DEADLINE: KVM_SET_LAPIC cancels the LAPIC timer, so the deadline is armed after it.
    /// 9. MP_STATE after the LAPIC: without an in-kernel LAPIC KVM refuses every state but RUNNABLE, and it keeps
    ///    INIT/SIPI-received as pending events of the LAPIC, so the LAPIC is loaded first.
    /// 10. VCPU_EVENTS after SREGS and MP_STATE: SREGS' interrupt_bitmap re-queues an interrupt and the events'
    ///    latched INIT/SMM bits land in the LAPIC and hflags; the events (injected exception/interrupt/NMI, the
    ///    interrupt shadow, SMI) are the exact state at the pause, so nothing may come after them that re-queues or
    ///    clears one.
    /// 11. DEBUGREGS last (independent of the rest).
    /// </remarks>
    public static IReadOnlyList<uint> Apply(KvmVcpu vcpu, VcpuSavedState state)
    {
        if (state.VcpuId != vcpu.Id)
            throw new ArgumentException($"the saved state is vCPU {state.VcpuId}'s, not vCPU {vcpu.Id}'s", nameof(state));

        // Parse everything before the first ioctl.
        var cpuid = CpuidEntries(state);
        var sregs = StructBytes.Read<KvmSregs>(state.Sregs, "sregs (struct kvm_sregs)");
        var regs = StructBytes.Read<KvmRegs>(state.Regs, "regs (struct kvm_regs)");
        var fpu = StructBytes.ReadOptional<KvmFpu>(state.Fpu, "fpu (struct kvm_fpu)");
        var xcrs = StructBytes.ReadOptional<KvmXcrs>(state.Xcrs, "xcrs (struct kvm_xcrs)");
        var debugRegs = StructBytes.ReadOptional<KvmDebugRegs>(state.DebugRegs, "debug registers (struct kvm_debugregs)");
        var lapic = StructBytes.ReadOptional<KvmLapicState>(state.Lapic, "lapic (struct kvm_lapic_state)");
        var events = StructBytes.Read<KvmVcpuEvents>(state.VcpuEvents, "vcpu events (struct kvm_vcpu_events)");
        if (xcrs is { NrXcrs: > KvmXcrs.MaxXcrs } x)
            throw new SnapshotFormatException($"saved xcrs claim {x.NrXcrs} XCRs, at most {KvmXcrs.MaxXcrs}");
        if (state.Xsave is { } area && (area.Length < 4096 || area.Length > MaxXsaveBytes || area.Length % 4 != 0))
            throw new SnapshotFormatException($"saved XSAVE area has {area.Length} bytes, expected a multiple of 4 from 4096 to {MaxXsaveBytes}");
        if (state.Xsave is not null && state.Fpu is not null)
            throw new SnapshotFormatException("saved state has both an XSAVE area and kvm_fpu; it has one or the other");
        if (state.Xsave is not null && !vcpu.Vm.HasXsave)
            throw new KvmException("the saved vCPU state has an XSAVE area but this KVM has no KVM_CAP_XSAVE");
        var msrs = state.Msrs ?? throw new SnapshotFormatException("saved state has no MSR list");
        var deadline = msrs.Where(m => m.Index == TscDeadlineMsr).Select(m => new KvmMsrEntry(m.Index, m.Value)).ToArray();
        var others = msrs.Where(m => m.Index != TscDeadlineMsr).Select(m => new KvmMsrEntry(m.Index, m.Value)).ToArray();

        if (cpuid.Length > 0) vcpu.SetCpuid(cpuid);                       // 1
        vcpu.SetSregs(sregs);                                               // 2
        vcpu.SetRegs(regs);                                                 // 3
        if (state.Xsave is { } xsave) vcpu.SetXsave(xsave);                 // 4
        else if (fpu is { } f) vcpu.SetFpu(f);
        if (xcrs is { } xc) vcpu.SetXcrs(xc);                               // 5
        var refused = new List<uint>(vcpu.SetMsrs(others));                 // 6
        if (lapic is { } l) vcpu.SetLapic(l);                               // 7
        refused.AddRange(vcpu.SetMsrs(deadline));                           // 8
        vcpu.SetMpState(state.MpState);                                     // 9
        vcpu.SetVcpuEvents(events);                                         // 10
        if (debugRegs is { } d) vcpu.SetDebugRegs(d);                       // 11
        return refused;
    }

    /// <summary>The KvmCpuidEntry2 entries of a saved state's struct kvm_cpuid2 (for the host-CPUID check).</summary>
    public static KvmCpuidEntry2[] CpuidEntries(VcpuSavedState state)
    {
        var bytes = state.Cpuid ?? throw new SnapshotFormatException("saved state has no CPUID");
        var entrySize = Marshal.SizeOf<KvmCpuidEntry2>();
        if (bytes.Length < 8 || (bytes.Length - 8) % entrySize != 0)
            throw new SnapshotFormatException($"saved CPUID (struct kvm_cpuid2) has {bytes.Length} bytes, expected 8 + {entrySize} per entry");
        var count = BitConverter.ToUInt32(bytes, 0);
        if (count != (bytes.Length - 8) / entrySize)
            throw new SnapshotFormatException($"saved CPUID says {count} entries but holds {(bytes.Length - 8) / entrySize}");
        return MemoryMarshal.Cast<byte, KvmCpuidEntry2>(bytes.AsSpan(8)).ToArray();
    }

    private static byte[] CpuidBytes(KvmCpuidEntry2[] entries)
    {
        var bytes = new byte[8 + entries.Length * Marshal.SizeOf<KvmCpuidEntry2>()];
        BitConverter.TryWriteBytes(bytes, (uint)entries.Length);
        MemoryMarshal.AsBytes(entries.AsSpan()).CopyTo(bytes.AsSpan(8));
        return bytes;
    }
}

namespace KvmActors.Runtime.Kvm;

/// <summary>
/// The state ioctls of a vCPU beyond REGS/SREGS/MP_STATE, for snapshots and migration: FPU/XSAVE, XCRs, debug
/// registers, the in-kernel LAPIC, MSRs, pending events and the CPUID the vCPU was given.
/// </summary>
public sealed unsafe partial class KvmVcpu
{
    /// <summary>KVM refuses KVM_GET_MSRS/KVM_SET_MSRS of this many entries or more at once (MAX_IO_MSRS).</summary>
    private const int MaxMsrsPerCall = 255;

    public KvmFpu GetFpu() { KvmFpu f; KvmCalls.Ioctl(_fd, KvmIoctls.GetFpu, &f, $"vcpu {Id}"); return f; }
    public void SetFpu(in KvmFpu fpu) { fixed (KvmFpu* p = &fpu) KvmCalls.Ioctl(_fd, KvmIoctls.SetFpu, p, $"vcpu {Id}"); }

    /// <summary>
    /// The XSAVE area, <see cref="KvmVm.XsaveSize"/> bytes (KVM_GET_XSAVE2 where that is more than struct kvm_xsave's 4096).
    /// </summary>
    public byte[] GetXsave()
    {
        var size = Vm.XsaveSize;
        if (size == 0) throw new KvmException("KVM_GET_XSAVE: this KVM has no KVM_CAP_XSAVE (use KVM_GET_FPU)");
        var bytes = new byte[size];
        fixed (byte* p = bytes) KvmCalls.Ioctl(_fd, size > 4096 ? KvmIoctls.GetXsave2 : KvmIoctls.GetXsave, p, $"vcpu {Id}");
        return bytes;
    }

    /// <summary>
    /// KVM_SET_XSAVE. KVM reads <see cref="KvmVm.XsaveSize"/> bytes whatever the ioctl number says, so a shorter
    /// area (saved where XSAVE was smaller) is zero-padded to that size here rather than letting KVM read past it.
    /// </summary>
    public void SetXsave(ReadOnlySpan<byte> area)
    {
        if (area.Length < 4096) throw new ArgumentException($"an XSAVE area has at least 4096 bytes, not {area.Length}", nameof(area));
        var size = Vm.XsaveSize;
        if (size == 0) throw new KvmException("KVM_SET_XSAVE: this KVM has no KVM_CAP_XSAVE");
        var bytes = new byte[Math.Max(size, area.Length)];
        area.CopyTo(bytes);
        fixed (byte* p = bytes) KvmCalls.Ioctl(_fd, KvmIoctls.SetXsave, p, $"vcpu {Id}");
    }

    public KvmXcrs GetXcrs() { KvmXcrs x; KvmCalls.Ioctl(_fd, KvmIoctls.GetXcrs, &x, $"vcpu {Id}"); return x; }
    public void SetXcrs(in KvmXcrs xcrs) { fixed (KvmXcrs* p = &xcrs) KvmCalls.Ioctl(_fd, KvmIoctls.SetXcrs, p, $"vcpu {Id}"); }

    public KvmDebugRegs GetDebugRegs() { KvmDebugRegs d; KvmCalls.Ioctl(_fd, KvmIoctls.GetDebugRegs, &d, $"vcpu {Id}"); return d; }
    public void SetDebugRegs(in KvmDebugRegs regs) { fixed (KvmDebugRegs* p = &regs) KvmCalls.Ioctl(_fd, KvmIoctls.SetDebugRegs, p, $"vcpu {Id}"); }

    /// <summary>KVM_GET_LAPIC: only with an in-kernel irqchip.</summary>
    public KvmLapicState GetLapic() { KvmLapicState l; KvmCalls.Ioctl(_fd, KvmIoctls.GetLapic, &l, $"vcpu {Id}"); return l; }
    public void SetLapic(in KvmLapicState lapic) { fixed (KvmLapicState* p = &lapic) KvmCalls.Ioctl(_fd, KvmIoctls.SetLapic, p, $"vcpu {Id}"); }

    public KvmVcpuEvents GetVcpuEvents() { KvmVcpuEvents e; KvmCalls.Ioctl(_fd, KvmIoctls.GetVcpuEvents, &e, $"vcpu {Id}"); return e; }
    public void SetVcpuEvents(in KvmVcpuEvents events) { fixed (KvmVcpuEvents* p = &events) KvmCalls.Ioctl(_fd, KvmIoctls.SetVcpuEvents, p, $"vcpu {Id}"); }

    /// <summary>KVM_GET_CPUID2: the CPUID table this vCPU was given by KVM_SET_CPUID2 (as KVM adjusted it).</summary>
    public KvmCpuidEntry2[] GetCpuid() => KvmCalls.ReadCpuid(_fd, KvmIoctls.GetCpuid2, $"vcpu {Id}");

    /// <summary>
    /// KVM_GET_MSRS of <paramref name="indexes"/>. KVM stops at the first MSR it cannot read and says how many it read,
    /// so the read resumes after each refused one: the answer holds every readable MSR, <paramref name="unreadable"/> the rest.
    /// </summary>
    public KvmMsrEntry[] GetMsrs(IReadOnlyList<uint> indexes, out IReadOnlyList<uint> unreadable)
    {
        var entries = indexes.Select(i => new KvmMsrEntry(i, 0)).ToArray();
        var refused = TransferMsrs(KvmIoctls.GetMsrs, entries);
        unreadable = refused;
        var skip = refused.ToHashSet();
        return entries.Where(e => !skip.Contains(e.Index)).ToArray();
    }

    /// <summary>KVM_SET_MSRS of every entry, going on past the ones KVM refuses; returns the refused indexes.</summary>
    public IReadOnlyList<uint> SetMsrs(ReadOnlySpan<KvmMsrEntry> entries) => TransferMsrs(KvmIoctls.SetMsrs, entries.ToArray());

    /// <summary>
    /// One KVM_GET_MSRS/KVM_SET_MSRS pass over <paramref name="entries"/> (read values are written back into them).
    /// Both process entries in order and return how many succeeded, stopping at the first failure: that entry is
    /// recorded as refused and the call is repeated from the one after it.
    /// </summary>
    private List<uint> TransferMsrs(uint request, KvmMsrEntry[] entries)
    {
        var refused = new List<uint>();
        var buffer = new byte[8 + Math.Min(entries.Length, MaxMsrsPerCall) * sizeof(KvmMsrEntry)];
        var start = 0;
        fixed (byte* p = buffer)
        {
            while (start < entries.Length)
            {
                var n = Math.Min(entries.Length - start, MaxMsrsPerCall);
                *(uint*)p = (uint)n; *(uint*)(p + 4) = 0;
                var batch = new Span<KvmMsrEntry>(p + 8, n);
                entries.AsSpan(start, n).CopyTo(batch);
                var done = KvmCalls.Ioctl(_fd, request, p, $"vcpu {Id}");
                batch[..done].CopyTo(entries.AsSpan(start, done));
                if (done < n) { refused.Add(entries[start + done].Index); start += done + 1; }
                else start += n;
            }
        }
        return refused;
    }

    /// <summary>
    /// Finish the last exit inside KVM without running the guest: KVM_RUN with immediate_exit set. After an I/O or MMIO
    /// exit KVM completes the instruction (e.g. moves RIP past an OUT) only on the next KVM_RUN, so state must not be
    /// read before this (Documentation/virt/kvm/api.rst, kvm_run.immediate_exit). Returns false when completing it
    /// produced a new exit instead (e.g. the next iteration of a rep outs), which the caller handles first.
    /// The vCPU's own thread calls it.
    /// </summary>
    public bool CompletePendingExit()
    {
        RequestImmediateExit();
        try { return Run() != 0; }
        finally { ClearImmediateExit(); }
    }
}

namespace KvmActors.Runtime.Kvm;

/// <summary>
/// The VM-wide state ioctls for snapshots and migration: the in-kernel irqchip (two 8259s and the IOAPIC), the PIT,
/// kvmclock, and the dirty-page log of a memory slot.
/// </summary>
public sealed unsafe partial class KvmVm
{
    private int? _xsaveSize;

    /// <summary>
    /// Bytes of a vCPU's XSAVE area: KVM_CHECK_EXTENSION(KVM_CAP_XSAVE2) when it answers more than struct kvm_xsave's
    /// 4096 (then KVM_GET_XSAVE2 must be used and KVM_SET_XSAVE reads that many bytes), else 4096; 0 without KVM_CAP_XSAVE.
    /// </summary>
    public int XsaveSize => _xsaveSize ??= CheckExtension(KvmCap.Xsave) <= 0 ? 0 : Math.Max(4096, CheckExtension(KvmCap.Xsave2));

    /// <summary>Whether the vCPUs have an XSAVE area (else their FPU state is KVM_GET_FPU's).</summary>
    public bool HasXsave => XsaveSize > 0;

    public KvmIrqchip GetIrqchip(KvmIrqchipId chip)
    {
        var c = new KvmIrqchip { ChipId = (uint)chip };
        KvmCalls.Ioctl(_fd, KvmIoctls.GetIrqchip, &c, chip.ToString());
        return c;
    }

    public void SetIrqchip(in KvmIrqchip chip)
    {
        fixed (KvmIrqchip* p = &chip) KvmCalls.Ioctl(_fd, KvmIoctls.SetIrqchip, p, ((KvmIrqchipId)chip.ChipId).ToString());
    }

    public KvmPitState2 GetPit2() { KvmPitState2 s; KvmCalls.Ioctl(_fd, KvmIoctls.GetPit2, &s); return s; }
    public void SetPit2(in KvmPitState2 state) { fixed (KvmPitState2* p = &state) KvmCalls.Ioctl(_fd, KvmIoctls.SetPit2, p); }

    public KvmClockData GetClock() { KvmClockData c; KvmCalls.Ioctl(_fd, KvmIoctls.GetClock, &c); return c; }
    public void SetClock(in KvmClockData clock) { fixed (KvmClockData* p = &clock) KvmCalls.Ioctl(_fd, KvmIoctls.SetClock, p); }

    /// <summary>
    /// KVM_GET_DIRTY_LOG of a slot registered with dirty logging: bit n of <paramref name="bitmap"/> = page n of the slot
    /// was written by the guest since the last call. KVM clears its log and write-protects the pages again as it answers
    /// (without KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 enabled). The bitmap needs one bit per page, rounded up to 64.
    /// </summary>
    public void GetDirtyLog(uint slot, Span<ulong> bitmap)
    {
        fixed (ulong* p = bitmap)
        {
            var log = new KvmDirtyLog { Slot = slot, DirtyBitmap = (ulong)p };
            KvmCalls.Ioctl(_fd, KvmIoctls.GetDirtyLog, &log, $"slot {slot}");
        }
    }
}

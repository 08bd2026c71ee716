using System.Runtime.InteropServices;

namespace KvmActors.Runtime.Kvm;

/// <summary>
/// A vCPU fd and its mmap'd kvm_run area. The guest's register state lives in KVM behind this fd,
/// so whoever holds this object (the VM actor) can hand it to a new vCPU actor incarnation.
/// </summary>
public sealed unsafe partial class KvmVcpu : IDisposable
{
    private readonly SafeFd _fd;
    private readonly SafeMapping _run;

    public int Id { get; }

    /// <summary>The VM this vCPU belongs to (its capabilities decide the XSAVE size).</summary>
    public KvmVm Vm { get; }

    internal KvmVcpu(int id, SafeFd fd, SafeMapping run, KvmVm vm) { Id = id; _fd = fd; _run = run; Vm = vm; }

    /// <summary>The mapped kvm_run area. Valid until <see cref="Dispose"/>.</summary>
    public byte* RunArea => (byte*)_run.Address;

    /// <summary>The exit KVM_RUN left in kvm_run, decoded in place.</summary>
    public KvmRunView Exit => new(new Span<byte>(RunArea, (int)_run.Length));

    public KvmExitReason ExitReason => Exit.Reason;

    /// <summary>
    /// One KVM_RUN. Returns 0, or the errno for EINTR/EAGAIN (normal: a kick or a signal); other errors throw.
    /// </summary>
    public int Run()
    {
        var added = false;
        try
        {
            _fd.DangerousAddRef(ref added);
            var r = Native.Ioctl(_fd.Fd, KvmIoctls.Run, 0);
            if (r >= 0) return 0;
            var errno = Marshal.GetLastPInvokeError();
            if (errno is Errno.EINTR or Errno.EAGAIN) return errno;
            throw new KvmException("KVM_RUN", errno, $"vcpu {Id}");
        }
        finally { if (added) _fd.DangerousRelease(); }
    }

    /// <summary>Ask the next (or current, together with a signal) KVM_RUN to return EINTR at once.</summary>
    public void RequestImmediateExit() => Volatile.Write(ref RunArea[KvmRunLayout.ImmediateExit], 1);
    public void ClearImmediateExit() => Volatile.Write(ref RunArea[KvmRunLayout.ImmediateExit], 0);

    public KvmRegs GetRegs() { KvmRegs r; KvmCalls.Ioctl(_fd, KvmIoctls.GetRegs, &r); return r; }
    public void SetRegs(in KvmRegs regs) { fixed (KvmRegs* p = &regs) KvmCalls.Ioctl(_fd, KvmIoctls.SetRegs, p); }
    public KvmSregs GetSregs() { KvmSregs s; KvmCalls.Ioctl(_fd, KvmIoctls.GetSregs, &s); return s; }
    public void SetSregs(in KvmSregs sregs) { fixed (KvmSregs* p = &sregs) KvmCalls.Ioctl(_fd, KvmIoctls.SetSregs, p); }

    public uint GetMpState() { uint s; KvmCalls.Ioctl(_fd, KvmIoctls.GetMpState, &s); return s; }
    public void SetMpState(uint state) => KvmCalls.Ioctl(_fd, KvmIoctls.SetMpState, &state);

    /// <summary>
    /// The table last given to <see cref="SetCpuid"/>, as given: the vCPU model. KVM_GET_CPUID2 may answer more
    /// (measured: the software KVM here adds host feature bits beyond KVM_GET_SUPPORTED_CPUID), so a snapshot keeps this.
    /// </summary>
    public KvmCpuidEntry2[]? GivenCpuid { get; private set; }

    public void SetCpuid(ReadOnlySpan<KvmCpuidEntry2> entries)
    {
        var bytes = new byte[8 + entries.Length * sizeof(KvmCpuidEntry2)];
        fixed (byte* p = bytes)
        {
            *(uint*)p = (uint)entries.Length;
            entries.CopyTo(new Span<KvmCpuidEntry2>(p + 8, entries.Length));
            KvmCalls.Ioctl(_fd, KvmIoctls.SetCpuid2, p, $"vcpu {Id}");
        }
        GivenCpuid = entries.ToArray();
    }

    /// <summary>KVM_SET_MSRS for one MSR; returns false where KVM refuses it (some MSRs are not settable on every KVM).</summary>
    public bool TrySetMsr(uint index, ulong value)
    {
        var buf = stackalloc byte[8 + 16];
        *(uint*)buf = 1; *(uint*)(buf + 4) = 0;
        *(uint*)(buf + 8) = index; *(uint*)(buf + 12) = 0; *(ulong*)(buf + 16) = value;
        return Native.Ioctl(_fd.Fd, KvmIoctls.SetMsrs, buf) == 1;
    }

    /// <summary>
    /// KVM_SET_SIGNAL_MASK: the signal mask in force while this vCPU is inside KVM_RUN.
    /// Used to let the kick signal interrupt KVM_RUN while it stays blocked everywhere else.
    /// </summary>
    public void SetSignalMask(ulong mask)
    {
        var buf = stackalloc byte[4 + 8];
        *(uint*)buf = 8;
        *(ulong*)(buf + 4) = mask;
        KvmCalls.Ioctl(_fd, KvmIoctls.SetSignalMask, buf, $"vcpu {Id}");
    }

    public void Dispose()
    {
        _run.Dispose();
        _fd.Dispose();
    }
}

using System.Runtime.InteropServices;

namespace KvmActors.Runtime.Kvm;

/// <summary>
/// Getting a vCPU thread out of KVM_RUN without a signal handler: the kick signal is blocked in the
/// vCPU thread and unblocked only inside KVM_RUN (KVM_SET_SIGNAL_MASK). A kick sets immediate_exit
/// (so a KVM_RUN about to start returns at once) and sends the signal to the thread (so a running one
/// returns EINTR). The signal then stays pending, blocked, until the vCPU consumes it with sigtimedwait.
/// </summary>
public static unsafe class VcpuKick
{
    /// <summary>Called on the vCPU thread: block the signal here and let KVM_RUN unblock it.</summary>
    public static void PrepareThread(KvmVcpu vcpu, int signal)
    {
        var set = Native.SigSet.Of(signal);
        var old = new Native.SigSet();
        if (Native.PthreadSigmask(Native.SIG_BLOCK, set.Bits, old.Bits) != 0)
            throw new KvmException("pthread_sigmask", 22, $"blocking signal {signal}");
        // The mask in force inside KVM_RUN: what the thread blocked before, minus the kick signal.
        vcpu.SetSignalMask(old.Bits[0] & ~(1UL << (signal - 1)));
    }

    /// <summary>Called on the vCPU thread after an EINTR: drop the pending kick so the next KVM_RUN runs.</summary>
    public static void Consume(KvmVcpu vcpu, int signal)
    {
        vcpu.ClearImmediateExit();
        var set = Native.SigSet.Of(signal);
        var zero = new Native.Timespec();
        while (Native.SigTimedWait(set.Bits, null, &zero) == signal) { }
    }

    /// <summary>From any thread: make the vCPU leave KVM_RUN (or not enter it) soon.</summary>
    public static void Kick(KvmVcpu vcpu, int nativeThreadId, int signal)
    {
        vcpu.RequestImmediateExit();
        if (nativeThreadId > 0) Native.TgKill(Native.GetPid(), nativeThreadId, signal);
    }

    public static int CurrentNativeThreadId() => Native.GetTid();

    /// <summary>
    /// Called on the vCPU thread: give it nice value <paramref name="nice"/> (0..19; only ever lowered, which needs
    /// no privilege), so the host's own threads win the CPU over guest code: a spinning guest must never starve
    /// the timers, actors and signal handling that stop it.
    /// </summary>
    public static void LowerThreadPriority(int nice)
    {
        if (nice <= 0) return;
        if (Native.SetPriority(Native.PRIO_PROCESS, (uint)Native.GetTid(), nice) != 0)
            throw new KvmException("setpriority", Marshal.GetLastPInvokeError(), $"nice {nice} for the vCPU thread");
    }

    /// <summary>
    /// Called on a stopping vCPU thread: back to the host's priority (nice 0) where the process may raise it (root,
    /// CAP_SYS_NICE or RLIMIT_NICE), so its last steps, which the VM's end waits for, do not queue behind the load;
    /// where it may not, the thread stays at its nice value (false).
    /// </summary>
    public static bool TryRestoreThreadPriority() => Native.SetPriority(Native.PRIO_PROCESS, (uint)Native.GetTid(), 0) == 0;
}

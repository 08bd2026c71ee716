using System.Runtime.InteropServices;

namespace KvmActors.Runtime.Kvm;

/// <summary>
/// The calling thread's CPU time (clock_gettime(CLOCK_THREAD_CPUTIME_ID)), in nanoseconds: time the thread ran,
/// not time it waited for a CPU. <c>kvmactors bench</c> samples it around the handling of some exits, so the
/// handling cost it reports does not grow when other processes preempt the vCPU thread.
/// </summary>
public static unsafe partial class ThreadCpuClock
{
    private const int ClockThreadCpuTimeId = 3;

    [LibraryImport("libc", EntryPoint = "clock_gettime")]
    private static partial int ClockGetTime(int clock, Native.Timespec* ts);

    /// <summary>The calling thread's CPU time so far, ns (0 if the clock is unavailable).</summary>
    public static long NowNs()
    {
        Native.Timespec ts;
        return ClockGetTime(ClockThreadCpuTimeId, &ts) == 0 ? ts.Sec * 1_000_000_000L + ts.Nsec : 0;
    }
}

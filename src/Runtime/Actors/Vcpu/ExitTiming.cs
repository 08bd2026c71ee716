using System.Diagnostics;
using KvmActors.Runtime.Kvm;

namespace KvmActors.Runtime.Vcpu;

/// <summary>
/// Where a vCPU's time goes, for <c>kvmactors bench</c>: time inside KVM_RUN (the exit itself, guest code
/// included) and time outside it (handling the exit: the runtime's own cost), summed over every vCPU of the
/// process. Off unless the bench turns it on; when off it costs one branch per exit. When on, each vCPU
/// sums locally and adds its sums here at the end of each exit loop, so vCPUs never contend on it.
/// <para>Besides wall time it keeps, per vCPU thread: the thread's CPU time outside KVM_RUN on every
/// <see cref="CpuSampleEvery"/>-th exit (clock_gettime(CLOCK_THREAD_CPUTIME_ID): time the thread ran, so it does
/// not grow when another process preempts it, as wall time does), the bytes the thread allocated, and how many
/// of its Tells to a device ran the device on the thread and how many found the device busy elsewhere.</para>
/// </summary>
public static class ExitTiming
{
    /// <summary>One exit in this many has its handling timed in thread CPU time too (three clock reads: ~1.5 µs here).</summary>
    public const int CpuSampleEvery = 32;

    private static volatile bool _enabled;
    private static long s_exits, s_insideTicks, s_outsideTicks, s_cpuSamples, s_cpuOutsideNs, s_allocated, s_tells, s_busy;

    // Device Tells made on this thread (counted by the device dispatcher while timing is on); added at Flush.
    [ThreadStatic] private static long _threadTells, _threadBusy;

    public static bool Enabled
    {
        get => _enabled;
        set => _enabled = value;
    }

    /// <summary>The sums of all vCPU threads since the last <see cref="TakeAndReset"/>.</summary>
    public readonly record struct Totals(
        long Exits, double InsideMicroseconds, double OutsideMicroseconds,
        long CpuSamples, double CpuOutsideMicroseconds, long AllocatedBytes, long DeviceTells, long DeviceBusy)
    {
        /// <summary>Thread CPU µs outside KVM_RUN per sampled exit, less the clock's own cost (<paramref name="clockCostUs"/>).</summary>
        public double CpuOutsidePerExit(double clockCostUs) => CpuSamples == 0 ? double.NaN : Math.Max(0, CpuOutsideMicroseconds / CpuSamples - clockCostUs);
    }

    /// <summary>Device dispatcher, on a vCPU thread: a message was told to a device; <paramref name="busy"/>: it was running elsewhere.</summary>
    public static void CountDeviceTell(bool busy)
    {
        _threadTells++;
        if (busy) _threadBusy++;
    }

    private static long s_poolRuns;

    /// <summary>Device dispatcher: a device mailbox was handed to the thread pool (a wake-up) while timing is on.</summary>
    public static void CountPoolRun() => Interlocked.Increment(ref s_poolRuns);

    /// <summary>Device mailboxes handed to the thread pool since the last call, cleared.</summary>
    public static long TakePoolRuns() => Interlocked.Exchange(ref s_poolRuns, 0);

    /// <summary>The sums so far, cleared.</summary>
    public static Totals TakeAndReset()
    {
        var exits = Interlocked.Exchange(ref s_exits, 0);
        var inside = Interlocked.Exchange(ref s_insideTicks, 0);
        var outside = Interlocked.Exchange(ref s_outsideTicks, 0);
        return new Totals(exits, inside * 1e6 / Stopwatch.Frequency, outside * 1e6 / Stopwatch.Frequency,
            Interlocked.Exchange(ref s_cpuSamples, 0), Interlocked.Exchange(ref s_cpuOutsideNs, 0) / 1000.0,
            Interlocked.Exchange(ref s_allocated, 0), Interlocked.Exchange(ref s_tells, 0), Interlocked.Exchange(ref s_busy, 0));
    }

    /// <summary>
    /// What one sample of the thread CPU clock costs itself, in µs of thread CPU time between two reads (the
    /// median of back-to-back pairs): subtracted from each sampled exit, for both variants alike.
    /// </summary>
    public static double MeasureClockCostMicroseconds()
    {
        var d = new long[2001];
        for (var i = 0; i < d.Length; i++)
        {
            var a = ThreadCpuClock.NowNs();
            d[i] = ThreadCpuClock.NowNs() - a;
        }
        Array.Sort(d);
        return d[d.Length / 2] / 1000.0;
    }

    /// <summary>The per-vCPU side: call <see cref="BeforeRun"/> and <see cref="AfterRun"/> around KVM_RUN, <see cref="Flush"/> now and then.</summary>
    public struct Probe
    {
        private long _lastReturn, _enteredAt, _exits, _inside, _outside;
        private long _cpuAt, _cpuSamples, _cpuOutside, _allocMark;
        private int _untilSample;

        public void BeforeRun()
        {
            var now = Stopwatch.GetTimestamp();
            if (_lastReturn != 0) _outside += now - _lastReturn;
            if (_cpuAt != 0)
            {
                _cpuOutside += ThreadCpuClock.NowNs() - _cpuAt;
                _cpuSamples++;
                _cpuAt = 0;
            }
            if (_allocMark == 0) _allocMark = GC.GetAllocatedBytesForCurrentThread();
            _enteredAt = Stopwatch.GetTimestamp(); // after the clock read, so a sample adds nothing to KVM_RUN's time
        }

        public void AfterRun()
        {
            var now = Stopwatch.GetTimestamp();
            _inside += now - _enteredAt;
            _exits++;
            if (--_untilSample <= 0)
            {
                _untilSample = CpuSampleEvery;
                // The first read after KVM_RUN costs more than a warm one (measured: ~1 µs against ~0.5 µs here):
                // read twice and start at the second, so what is subtracted is the cost of a warm read.
                ThreadCpuClock.NowNs();
                _cpuAt = ThreadCpuClock.NowNs();
                now = Stopwatch.GetTimestamp(); // the clock read is not the handling's wall time
            }
            _lastReturn = now;
        }

        public void Flush()
        {
            if (_exits == 0) return;
            Interlocked.Add(ref s_exits, _exits);
            Interlocked.Add(ref s_insideTicks, _inside);
            Interlocked.Add(ref s_outsideTicks, _outside);
            Interlocked.Add(ref s_cpuSamples, _cpuSamples);
            Interlocked.Add(ref s_cpuOutsideNs, _cpuOutside);
            var allocated = GC.GetAllocatedBytesForCurrentThread();
            Interlocked.Add(ref s_allocated, allocated - _allocMark);
            _allocMark = allocated;
            Interlocked.Add(ref s_tells, _threadTells);
            Interlocked.Add(ref s_busy, _threadBusy);
            _threadTells = _threadBusy = 0;
            _exits = _inside = _outside = _cpuSamples = _cpuOutside = 0;
        }
    }
}

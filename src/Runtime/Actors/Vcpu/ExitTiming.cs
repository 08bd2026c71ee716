using System.Diagnostics;

namespace KvmActors.Runtime.Vcpu;

/// <summary>
/// Where a vCPU's time goes, for <c>kvmactors bench</c>: time inside KVM_RUN (the exit itself, guest code
/// included) and time outside it (handling the exit: the runtime's own cost), summed over every vCPU of the
/// process. Off unless the bench turns it on; when off it costs one branch per exit. When on, each vCPU
/// sums locally and adds its sums here at the end of each exit loop, so vCPUs never contend on it.
/// </summary>
public static class ExitTiming
{
    private static volatile bool _enabled;
    private static long _exits, _insideTicks, _outsideTicks;

    public static bool Enabled
    {
        get => _enabled;
        set => _enabled = value;
    }

    /// <summary>One vCPU's sums since its last report.</summary>
    public static void Add(long exits, long insideTicks, long outsideTicks)
    {
        Interlocked.Add(ref _exits, exits);
        Interlocked.Add(ref _insideTicks, insideTicks);
        Interlocked.Add(ref _outsideTicks, outsideTicks);
    }

    /// <summary>The sums so far (exits, µs inside KVM_RUN, µs outside it), cleared.</summary>
    public static (long Exits, double InsideMicroseconds, double OutsideMicroseconds) TakeAndReset()
    {
        var exits = Interlocked.Exchange(ref _exits, 0);
        var inside = Interlocked.Exchange(ref _insideTicks, 0);
        var outside = Interlocked.Exchange(ref _outsideTicks, 0);
        return (exits, inside * 1e6 / Stopwatch.Frequency, outside * 1e6 / Stopwatch.Frequency);
    }

    /// <summary>The per-vCPU side: call <see cref="BeforeRun"/> and <see cref="AfterRun"/> around KVM_RUN, <see cref="Flush"/> now and then.</summary>
    public struct Probe
    {
        private long _lastReturn, _enteredAt, _exits, _inside, _outside;

        public void BeforeRun()
        {
            var now = Stopwatch.GetTimestamp();
            if (_lastReturn != 0) _outside += now - _lastReturn;
            _enteredAt = now;
        }

        public void AfterRun()
        {
            var now = Stopwatch.GetTimestamp();
            _inside += now - _enteredAt;
            _lastReturn = now;
            _exits++;
        }

        public void Flush()
        {
            if (_exits == 0) return;
            Add(_exits, _inside, _outside);
            _exits = _inside = _outside = 0;
        }
    }
}

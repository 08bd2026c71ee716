using System.Collections.Concurrent;
using System.Diagnostics;
using KvmActors.Runtime.Devices;
using KvmActors.Sdk;

namespace KvmActors.Host.Bench;

/// <summary>
/// When each vCPU of one benchmark run wrote its start and end marker (<see cref="Stopwatch"/> ticks).
/// The timed interval of a run is from the first start marker to the last end marker.
/// </summary>
public sealed class BenchMarks
{
    private static readonly ConcurrentDictionary<string, BenchMarks> Runs = new();

    private readonly long[] _start, _end;
    private readonly TimeSpan[] _startCpu, _endCpu;

    public BenchMarks(int vcpus)
    {
        _start = new long[vcpus];
        _end = new long[vcpus];
        _startCpu = new TimeSpan[vcpus];
        _endCpu = new TimeSpan[vcpus];
    }

    public static BenchMarks Register(string runId, int vcpus) => Runs[runId] = new BenchMarks(vcpus);
    public static BenchMarks? Take(string runId) => Runs.TryRemove(runId, out var m) ? m : null;
    internal static BenchMarks? Find(string runId) => Runs.GetValueOrDefault(runId);

    public void Mark(int vcpu, uint value)
    {
        var now = Stopwatch.GetTimestamp();
        var cpu = Environment.CpuUsage.TotalTime; // getrusage(RUSAGE_SELF): every thread of the process
        if ((uint)vcpu >= _start.Length) return;
        if (value == 0) { _startCpu[vcpu] = cpu; Volatile.Write(ref _start[vcpu], now); }
        else { _endCpu[vcpu] = cpu; Volatile.Write(ref _end[vcpu], now); }
    }

    /// <summary>COM1's read path in the actor variant (found by the clock device), for its fast/slow read counts.</summary>
    public DeviceReadPath? Com1Path { get; set; }

    public bool Complete => _start.All(t => t != 0) && _end.All(t => t != 0);

    /// <summary>First start marker to last end marker.</summary>
    public TimeSpan Elapsed => Stopwatch.GetElapsedTime(_start.Min(), _end.Max());

    /// <summary>CPU time of the whole process (all threads, user + system) over the same interval.</summary>
    public TimeSpan Cpu => _endCpu[Array.IndexOf(_end, _end.Max())] - _startCpu[Array.IndexOf(_start, _start.Min())];
}

/// <summary>
/// The benchmark's timing device on <see cref="BenchGuests.MarkerPort"/>: a write of 0 is a vCPU's start
/// marker, any other value its end marker. In the actor variants the time is taken when this actor handles
/// the write: on the vCPU thread, inside the exit, when the device dispatcher runs it inline (the default);
/// a mailbox hop later with thread-pool devices (at both ends of the interval alike). Not a registered device
/// type: the bench names it by its CLR type.
/// </summary>
public sealed class BenchClockDevice : DeviceActor
{
    private readonly BenchMarks? _marks;

    public BenchClockDevice(DeviceContext context) : base(context)
    {
        context.Options.RejectUnknown("run");
        _marks = BenchMarks.Find(context.Options.GetString("run", ""));
    }

    protected override void PreStart() => Context.ActorSelection("../device-com1").Tell(new Akka.Actor.Identify("com1"));

    protected override void OnMessage(object message)
    {
        if (message is Akka.Actor.ActorIdentity { Subject: { } com1 } && _marks is not null) _marks.Com1Path = DeviceReadPath.Of(com1);
    }

    protected override void OnWrite(Sdk.DeviceAccess access, ulong value) => _marks?.Mark(access.VcpuId, (uint)value);

    protected override ulong OnRead(Sdk.DeviceAccess access) => 0;
}

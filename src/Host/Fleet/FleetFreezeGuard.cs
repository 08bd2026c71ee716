using System.Diagnostics;
using Akka.Actor;
using Akka.Cluster;
using Akka.Event;
using KvmActors.Host.Serve;

namespace KvmActors.Host.Fleet;

/// <summary>
/// A kvm-host node's guard against running a VM twice after a freeze (SIGSTOP, a suspended machine): its ticks come
/// every freeze-check-interval, so a gap longer than the failure detector's acceptable-heartbeat-pause means the
/// others may have found this node unreachable, downed it and brought its VMs back elsewhere. It then pauses every
/// running VM here at once, before anything else, and resumes them only once the cluster has looked whole (this
/// node up, every member reachable) for stable-after; a node that was downed instead finds out meanwhile and stops.
/// </summary>
public sealed class FleetFreezeGuard : ReceiveActor, IWithTimers
{
    public const string Name = "fleet-freeze-guard";
    private sealed record Tick;
    private sealed record Paused(List<HostedVm> Vms);

    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly Func<VmHost> _host;
    private readonly RecoverySettings _settings;
    private long _last = Stopwatch.GetTimestamp();
    private List<HostedVm>? _paused;
    private long? _wholeSince;

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(Func<VmHost> host, RecoverySettings settings) => Akka.Actor.Props.Create(() => new FleetFreezeGuard(host, settings));

    public FleetFreezeGuard(Func<VmHost> host, RecoverySettings settings)
    {
        _host = host;
        _settings = settings;
        Receive<Tick>(_ => OnTick());
        Receive<Paused>(p => _paused = p.Vms);
    }

    protected override void PreStart() => Timers.StartPeriodicTimer("tick", new Tick(), _settings.FreezeCheckInterval);

    private void OnTick()
    {
        var now = Stopwatch.GetTimestamp();
        var gap = Stopwatch.GetElapsedTime(_last, now);
        _last = now;
        if (gap > _settings.AcceptableHeartbeatPause && _paused is null) Freeze(gap);
        else if (_paused is { } paused) MaybeResume(paused, now);
    }

    private void Freeze(TimeSpan gap)
    {
        var host = _host();
        var running = host.All.Where(v => v.State is VmStates.Running or VmStates.Creating).ToList();
        _log.Warning("this node was frozen for {0:F1} s (more than acceptable-heartbeat-pause {1}): the cluster may have downed it; pausing its {2} running VM(s)",
            gap.TotalSeconds, _settings.AcceptableHeartbeatPause, running.Count);
        _paused = [];
        _wholeSince = null;
        Task.WhenAll(running.Select(async v => (v, await host.PauseAsync(v, CancellationToken.None))))
            .ContinueWith(t => new Paused(t.IsCompletedSuccessfully ? [.. t.Result.Where(r => r.Item2 == VmHost.ControlOutcome.Done).Select(r => r.v)] : []),
                TaskScheduler.Default)
            .PipeTo(Self);
    }

    private void MaybeResume(List<HostedVm> paused, long now)
    {
        var cluster = Cluster.Get(Context.System);
        var whole = cluster.SelfMember.Status == MemberStatus.Up && cluster.State.Unreachable.Count == 0;
        if (!whole) { _wholeSince = null; return; }
        _wholeSince ??= now;
        if (Stopwatch.GetElapsedTime(_wholeSince.Value, now) < _settings.StableAfter) return;
        _log.Info("the cluster has been whole for {0}: resuming the {1} VM(s) paused after the freeze", _settings.StableAfter, paused.Count);
        var host = _host();
        // A VM whose entity learned meanwhile that it is owned elsewhere has been stopped; the rest run on.
        foreach (var vm in paused.Where(v => v.State == VmStates.Paused)) _ = host.ResumeAsync(vm, CancellationToken.None);
        _paused = null;
    }
}

using System.Collections.Concurrent;
using Akka.Actor;
using Akka.Dispatch;

namespace KvmActors.Runtime.Dispatch;

/// <summary>
/// One OS thread per actor, started with the actor and ended as soon as the actor has stopped
/// (<c>kvmactors.vcpu-dispatcher</c>, <c>kvmactors.vm-dispatcher</c>). Like Akka's PinnedDispatcher (a restarted
/// actor keeps its thread: KVM sees the same thread for the same vCPU), with two differences that matter for a VMM:
/// <list type="bullet">
/// <item>the thread ends right after the actor's last turn (its PostStop and detach), not after the dispatcher's
/// <c>shutdown-timeout</c> on the scheduler's clock: a stopped VM holds no thread (Akka's pinned threads
/// outlived their VM by one scheduler tick at best, by a second with the default timeout);</item>
/// <item><see cref="ThreadExited"/> says when it has ended, so the VM can wait for its vCPU threads before it
/// releases the VM and reports its end.</item>
/// </list>
/// A VM actor on it does its blocking KVM set-up (PreStart) and release (PostStop: <c>close</c> of an irqchip VM's
/// fd sleeps ~15 ms in the kernel) on its own thread, never on the shared thread pool, so many VMs start and end
/// in parallel.
/// </summary>
public sealed class OwnThreadDispatcher : MessageDispatcher
{
    private readonly ConcurrentQueue<IRunnable> _queue = new();
    private readonly SemaphoreSlim _wake = new(0);
    private readonly TaskCompletionSource _exited = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly object _gate = new();
    private Thread? _thread;
    private volatile bool _ending;

    /// <summary>On a thread of this dispatcher: the task that completes when that thread has ended; else null.</summary>
    [ThreadStatic] private static Task? _currentThreadExit;

    public static Task? CurrentThreadExit => _currentThreadExit;

    public OwnThreadDispatcher(MessageDispatcherConfigurator configurator, string id, int throughput, long? throughputDeadlineTicks)
        : base(configurator)
    {
        Id = id;
        Throughput = throughput;
        ThroughputDeadlineTime = throughputDeadlineTicks;
    }

    /// <summary>Completes once this dispatcher's thread has run its last task and returned.</summary>
    public Task ThreadExited => _exited.Task;

    protected override void ExecuteTask(IRunnable run)
    {
        _queue.Enqueue(run);
        if (_thread is null) StartThread();
        _wake.Release();
    }

    private void StartThread()
    {
        lock (_gate)
        {
            if (_thread is not null) return;
            // A background thread: like the runtime's own, it never holds up the process's exit.
            _thread = new Thread(Loop) { IsBackground = true, Name = Id };
            _thread.Start();
        }
    }

    private void Loop()
    {
        _currentThreadExit = _exited.Task;
        try
        {
            while (true)
            {
                while (_queue.TryDequeue(out var run))
                {
                    try { run.Run(); }
                    catch (Exception e) { ReportFailure(e); }
                }
                if (_ending && _queue.IsEmpty) return;
                _wake.Wait();
            }
        }
        finally
        {
            _exited.TrySetResult();
        }
    }

    /// <summary>The actor has stopped (this runs on its thread, in its last turn): the thread ends after this turn.</summary>
    public override void Detach(ActorCell cell)
    {
        try { base.Detach(cell); }
        finally { End(); }
    }

    protected override void Shutdown() => End();

    private void End()
    {
        _ending = true;
        _wake.Release();
        // Never started (the actor stopped before its first turn): nothing will run the exit.
        lock (_gate)
            if (_thread is null) _exited.TrySetResult();
    }
}

/// <summary>
/// Makes a new <see cref="OwnThreadDispatcher"/> for every actor that asks (<c>type =
/// "KvmActors.Runtime.Dispatch.OwnThreadDispatcherConfigurator, KvmActors.Runtime"</c>; <c>throughput</c>,
/// <c>throughput-deadline-time</c> as for any dispatcher).
/// </summary>
public sealed class OwnThreadDispatcherConfigurator(Akka.Configuration.Config config, IDispatcherPrerequisites prerequisites)
    : MessageDispatcherConfigurator(config, prerequisites)
{
    public override MessageDispatcher Dispatcher() =>
        new OwnThreadDispatcher(this, Config.GetString("id", null) ?? "own-thread", Config.GetInt("throughput", 1),
            Config.GetTimeSpan("throughput-deadline-time", TimeSpan.Zero) is { Ticks: > 0 } d ? d.Ticks : null);
}

using Akka.Actor;
using Akka.Dispatch;
using KvmActors.Runtime.Vcpu;

namespace KvmActors.Runtime.Devices;

/// <summary>
/// The dispatcher of device actors (<c>kvmactors.device-dispatcher</c>). A message told to an idle device by a
/// vCPU thread is handled right there, on that vCPU thread, inside the <c>Tell</c> (with what else that device,
/// or a device it tells, has queued meanwhile, for a few turns of <c>throughput</c> messages); a device already
/// busy on another thread just gets the message in its mailbox, and messages from any other thread are
/// handled on the .NET thread pool, as the default dispatcher does.
/// <para>
/// Why: <c>kvmactors bench</c> showed that on the thread pool every guest access pays for waking a pool
/// thread, and every IN for waking the vCPU's pinned thread again with the answer: tens of µs of CPU per round
/// trip against a KVM exit of ~8 µs (see the README, "Design: the exit path"). Handled inline, an OUT costs
/// about what a direct call costs and an IN round trip about a µs, which is what a classic VMM pays for its
/// device lock.
/// </para>
/// <para>
/// Nothing about the actor changes: its mailbox still serialises its messages (the mailbox's own scheduled
/// flag decides which thread runs it, so it never runs on two threads at once), its state is touched only by
/// it, it is supervised by the VM and restarted like any actor. What changes is which thread its handler
/// borrows: a device handler that blocks (a slow output sink) now holds up the vCPU that wrote to it, as in
/// every VMM that emulates devices in the vCPU thread — and a device must never wait for a vCPU's answer.
/// </para>
/// </summary>
public sealed class DeviceDispatcher : MessageDispatcher
{
    /// <summary>The config path of the dispatcher every device actor of a VM runs on.</summary>
    public const string ConfigPath = "kvmactors.device-dispatcher";

    // A vCPU thread runs at most this many turns of device mailboxes per Tell (a turn handles up to
    // `throughput` messages); what is still due after that goes to the thread pool.
    private const int MaxTurnsPerCall = 4;

    [ThreadStatic] private static bool _runsDevicesInline;
    [ThreadStatic] private static bool _running;
    [ThreadStatic] private static IRunnable? _next;

    /// <summary>Called once on each vCPU thread: idle devices may handle this thread's messages on it.</summary>
    public static void RunDevicesOnThisThread() => _runsDevicesInline = true;

    // kvmactors bench (ExitTiming.Enabled): mailbox runs started on this thread, to tell a Tell that ran the
    // device from one that found it busy.
    [ThreadStatic] private static long _executed;

    public DeviceDispatcher(MessageDispatcherConfigurator configurator) : base(configurator)
    {
        // MessageDispatcher does not read it: messages a mailbox handles per turn before it lets another thread in.
        Throughput = configurator.Config.GetInt("throughput", DefaultThroughput);
    }

    public override void Dispatch(ActorCell cell, Envelope envelope)
    {
        if (!_runsDevicesInline || !ExitTiming.Enabled)
        {
            base.Dispatch(cell, envelope);
            return;
        }
        var before = _executed;
        base.Dispatch(cell, envelope);
        ExitTiming.CountDeviceTell(busy: _executed == before); // not scheduled: the device's mailbox already was
    }

    protected override void ExecuteTask(IRunnable run)
    {
        _executed++;
        if (!_runsDevicesInline)
        {
            Pool(run);
            return;
        }
        if (_running)
        {
            // Scheduled while this thread runs a device mailbox: the same device again (messages arrived from
            // other vCPUs while it ran) or a device it told. Run it next, here, rather than wake a pool thread
            // (a wake-up costs more than a device's work); never nested, so the stack stays flat.
            if (_next is null) _next = run;
            else Pool(run);
            return;
        }
        _running = true;
        try
        {
            for (var turn = 1; ; turn++)
            {
                run.Run();
                if (_next is not { } next) break;
                _next = null;
                if (turn == MaxTurnsPerCall)
                {
                    Pool(next);
                    break;
                }
                run = next;
            }
        }
        finally
        {
            _running = false;
            if (_next is { } left)
            {
                _next = null;
                Pool(left);
            }
        }
    }

    private static void Pool(IRunnable run)
    {
        if (ExitTiming.Enabled) ExitTiming.CountPoolRun();
        ThreadPool.UnsafeQueueUserWorkItem(static r => r.Run(), run, preferLocal: false);
    }

    protected override void Shutdown() { }
}

/// <summary>Creates the <see cref="DeviceDispatcher"/> from its config (<c>type = "KvmActors.Runtime.Devices.DeviceDispatcherConfigurator, KvmActors.Runtime"</c>).</summary>
public sealed class DeviceDispatcherConfigurator : MessageDispatcherConfigurator
{
    private readonly DeviceDispatcher _dispatcher;

    public DeviceDispatcherConfigurator(Akka.Configuration.Config config, IDispatcherPrerequisites prerequisites) : base(config, prerequisites) =>
        _dispatcher = new DeviceDispatcher(this);

    public override MessageDispatcher Dispatcher() => _dispatcher;
}

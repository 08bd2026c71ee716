using System.Net;
using System.Net.Sockets;
using System.Threading.Channels;
using Akka.Actor;
using Akka.Event;
using KvmActors.Gdb;

namespace KvmActors.Runtime.Debug;

/// <summary>The debugger is listening (published on the event stream, so a caller can learn a port chosen by the OS).</summary>
public sealed record DebuggerListening(string VmName, EndPoint EndPoint);

/// <summary>
/// The VM's gdb stub: a child of the VM actor, beside its vCPUs and devices. It owns the listening socket and at
/// most one gdb connection at a time (a second one is closed at once, with a log line), runs a
/// <see cref="GdbSession"/> for it over <see cref="VmGdbTarget"/>, and feeds that target what the VM tells it:
/// a vCPU's debug stop, the VM's end.
/// </summary>
public sealed class DebuggerActor : ReceiveActor
{
    private readonly GdbSpec _spec;
    private readonly IActorRef _vm;
    private readonly int _vcpuCount;
    private readonly string _vmName;
    private readonly Socket _listener;
    private readonly CancellationTokenSource _stop = new();
    private readonly ILoggingAdapter _log = Context.GetLogger();
    // What the VM reports, for the session's target to wait on. Bounded: a debug stop pauses its vCPU, so at
    // most one per vCPU is outstanding, plus the VM's end.
    private readonly Channel<object> _events;
    private int _sessions;

    public DebuggerActor(GdbSpec spec, IActorRef vm, int vcpuCount, string vmName)
    {
        _spec = spec;
        _vm = vm;
        _vcpuCount = vcpuCount;
        _vmName = vmName;
        _events = Channel.CreateBounded<object>(new BoundedChannelOptions(vcpuCount + 8) { FullMode = BoundedChannelFullMode.DropOldest });
        var endPoint = spec.TryEndPoint(out var problem)
                       ?? throw new ConfigException("--gdb", "guest.gdb.listen", problem!);
        _listener = Listen(endPoint);

        Receive<VcpuDebugStopped>(s => _events.Writer.TryWrite(s));
        Receive<VmEndingForDebugger>(e => _events.Writer.TryWrite(e));
    }

    public static Props Props(GdbSpec spec, IActorRef vm, int vcpuCount, string vmName) =>
        Akka.Actor.Props.Create(() => new DebuggerActor(spec, vm, vcpuCount, vmName));

    private static Socket Listen(EndPoint endPoint)
    {
        var socket = endPoint is UnixDomainSocketEndPoint
            ? new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)
            : new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            socket.Bind(endPoint);
            if (endPoint is UnixDomainSocketEndPoint path && !OperatingSystem.IsWindows())
                File.SetUnixFileMode(path.ToString()!, UnixFileMode.UserRead | UnixFileMode.UserWrite); // 0600
            socket.Listen(1);
            return socket;
        }
        catch (SocketException e)
        {
            socket.Dispose();
            // A stale unix socket is not removed for the user: it may not be ours.
            throw new HostException($"gdb stub: cannot listen on {endPoint}: {e.Message}", e);
        }
    }

    protected override void PreStart()
    {
        var bound = _listener.LocalEndPoint!;
        _log.Info("VM '{0}': gdb stub listening on {1}{2}", _vmName, bound, _spec.Wait ? " (the guest waits for gdb)" : "");
        Context.System.EventStream.Publish(new DebuggerListening(_vmName, bound));
        _ = AcceptLoop(_stop.Token);
    }

    protected override void PostStop()
    {
        _stop.Cancel();
        var bound = _listener.LocalEndPoint;
        _listener.Dispose();
        if (bound is UnixDomainSocketEndPoint unix)
        {
            try { File.Delete(unix.ToString()!); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    private async Task AcceptLoop(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            Socket client;
            try { client = await _listener.AcceptAsync(ct); }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException) { return; }
            if (Interlocked.CompareExchange(ref _sessions, 1, 0) != 0)
            {
                // Only one debugger at a time: two would fight over every vCPU's registers and breakpoints.
                _log.Warning("VM '{0}': refused a second gdb connection from {1}: a debugger is already attached", _vmName, client.RemoteEndPoint);
                client.Dispose();
                continue;
            }
            _ = Serve(client, ct);
        }
    }

    private async Task Serve(Socket client, CancellationToken ct)
    {
        try
        {
            await using var stream = new NetworkStream(client, ownsSocket: true);
            if (client.AddressFamily != AddressFamily.Unix) client.NoDelay = true; // a packet per round trip: no Nagle delay
            var target = new VmGdbTarget(_vm, _vcpuCount, _events.Reader, _events.Writer);
            var mode = await target.GuestModeAsync(ct);
            _log.Info("VM '{0}': gdb attached from {1} ({2})", _vmName, client.RemoteEndPoint?.ToString() ?? "unix socket", mode);
            await new GdbSession(stream, target, new GdbSessionOptions(mode)).RunAsync(ct);
            _log.Info("VM '{0}': gdb detached", _vmName);
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or SocketException or ObjectDisposedException or AskTimeoutException)
        {
            _log.Info("VM '{0}': gdb connection ended: {1}", _vmName, e.Message);
        }
        finally
        {
            Interlocked.Exchange(ref _sessions, 0);
        }
    }
}

using System.Runtime.InteropServices;

namespace KvmActors.Host;

/// <summary>Why the CLI asks the VM to stop, and the exit status that stop gives.</summary>
public sealed record StopRequest(int Status, string Why)
{
    /// <summary>When the stop was due (Stopwatch ticks): for --timeout its deadline, however late the timer ran.</summary>
    public long At { get; init; } = System.Diagnostics.Stopwatch.GetTimestamp();
}

/// <summary>
/// The outside reasons a run ends before the guest ends it: SIGINT, SIGTERM and SIGHUP, the <c>--timeout</c>
/// deadline, and stdout's reader going away. The first one wins; a second signal ends the process at once
/// with the first one's status (the user asked twice: nothing more is written).
/// </summary>
public sealed partial class StopRequests : IDisposable
{
    private readonly TaskCompletionSource<StopRequest> _first = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly List<IDisposable> _registrations = [];

    public Task<StopRequest> First => _first.Task;

    /// <param name="timeout">stop once this much time has passed since the process started (like timeout(1)).</param>
    public StopRequests(TimeSpan? timeout)
    {
        OnSignal(PosixSignal.SIGINT, ExitCodes.Interrupted, "interrupted (SIGINT)");
        OnSignal(PosixSignal.SIGTERM, ExitCodes.Terminated, "terminated (SIGTERM)");
        OnSignal(PosixSignal.SIGHUP, ExitCodes.Hangup, "hung up (SIGHUP)");
        if (timeout is { } t)
        {
            var left = t - (DateTime.Now - System.Diagnostics.Process.GetCurrentProcess().StartTime);
            if (left < TimeSpan.Zero) left = TimeSpan.Zero;
            var due = System.Diagnostics.Stopwatch.GetTimestamp() + (long)(left.TotalSeconds * System.Diagnostics.Stopwatch.Frequency);
            _registrations.Add(new Timer(_ => Request(new StopRequest(ExitCodes.Timeout, $"timeout after {t}") { At = due }), null,
                left, Timeout.InfiniteTimeSpan));
        }
        WatchStdout();
    }

    private void OnSignal(PosixSignal signal, int status, string why) =>
        _registrations.Add(PosixSignalRegistration.Create(signal, context =>
        {
            context.Cancel = true; // we stop the VM ourselves, and write the summary and report
            if (Request(new StopRequest(status, why))) return;
            var first = _first.Task.Result;
            try { Console.Error.WriteLine($"kvmactors: {why} again: exiting at once with {first.Status}"); }
            catch (IOException) { }
            Environment.Exit(first.Status);
        }));

    /// <summary>Records <paramref name="request"/> unless an earlier one did; true when it was the first.</summary>
    public bool Request(StopRequest request) => _first.TrySetResult(request);

    /// <summary>
    /// When the reader of a pipe (or socket) on stdout goes away, the run ends with 141, as a program that
    /// SIGPIPE ends: the guest's output has nowhere to go. poll() with no events asked reports only that
    /// (POLLERR/POLLHUP); a file or terminal never reports it.
    /// </summary>
    private void WatchStdout()
    {
        var watcher = new Thread(() =>
        {
            var fd = new PollFd { Fd = 1 };
            while (!_first.Task.IsCompleted)
            {
                fd.Revents = 0;
                if (poll(ref fd, 1, -1) < 0)
                {
                    if (Marshal.GetLastPInvokeError() == Eintr) continue;
                    return;
                }
                if ((fd.Revents & PollNval) != 0) return; // stdout not open at all: nothing to watch
                if ((fd.Revents & (PollErr | PollHup)) != 0)
                {
                    Request(new StopRequest(ExitCodes.BrokenPipe, "stdout closed by its reader"));
                    return;
                }
            }
        }) { IsBackground = true, Name = "stdout-watch" };
        watcher.Start();
    }

    public void Dispose()
    {
        foreach (var r in _registrations) r.Dispose();
    }

    private const int Eintr = 4;
    private const short PollErr = 0x8, PollHup = 0x10, PollNval = 0x20;

    [StructLayout(LayoutKind.Sequential)]
    private struct PollFd { public int Fd; public short Events, Revents; }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int poll(ref PollFd fds, ulong count, int timeoutMs);
}

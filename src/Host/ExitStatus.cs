using KvmActors.Runtime.Kvm;

namespace KvmActors.Host;

/// <summary>The CLI's exit statuses (the README's table).</summary>
public static class ExitCodes
{
    public const int Ok = 0, Failure = 1, GuestFailure = Failure, Usage = 2, Timeout = 124;
    // A stop by signal exits 128 + the signal's number, as a shell reports a program the signal ended.
    public const int Hangup = 129, Interrupted = 130, BrokenPipe = 141, Terminated = 143;
}

/// <summary>
/// The one place errors become exit statuses and stderr lines: usage and config errors exit 2, guest, KVM
/// and host errors 1, and anything else 1 as an internal error; always one line, never a stack trace.
/// </summary>
public static class ErrorReport
{
    public static int StatusOf(Exception e) =>
        e is KvmActorsException { Kind: ErrorKind.Usage or ErrorKind.Config } ? ExitCodes.Usage : ExitCodes.Failure;

    public static string LineOf(Exception e)
    {
        var text = e switch
        {
            KvmActorsException { Kind: ErrorKind.Usage } => $"{e.Message} (see kvmactors --help)",
            KvmActorsException k => $"{k.Kind.ToString().ToLowerInvariant()} error: {OneLine(e.Message)}",
            _ => $"internal error: {e.GetType().Name}: {OneLine(e.Message)}",
        };
        return $"kvmactors: {text}{FdLimitNote(e)}";
    }

    /// <summary>Writes <paramref name="e"/> as one line on stderr and returns its exit status.</summary>
    public static int Report(Exception e)
    {
        try { Console.Error.WriteLine(LineOf(e)); }
        catch (IOException) { /* stderr is gone too: the status still says it */ }
        return StatusOf(e);
    }

    /// <summary>
    /// Installs the last line of defence: an exception no one caught, on any thread, is one line on stderr and
    /// exit 1 (Environment.Exit from the handler ends the process before the runtime aborts it with 134).
    /// </summary>
    public static void GuardProcess()
    {
        AppDomain.CurrentDomain.UnhandledException += (_, a) =>
        {
            try { Report(a.ExceptionObject as Exception ?? new Exception(a.ExceptionObject?.ToString())); }
            catch (Exception) { /* e.g. an assembly that can no longer be loaded: the status still says it */ }
            Environment.Exit(ExitCodes.Failure);
        };
        TaskScheduler.UnobservedTaskException += (_, a) =>
        {
            Report(a.Exception.InnerException ?? a.Exception);
            Environment.Exit(ExitCodes.Failure);
        };
    }

    /// <summary>A note naming the open-files limit when <paramref name="text"/> says it was reached, else "".</summary>
    public static string FdLimitNote(string? text) =>
        text is not null && (text.Contains("EMFILE") || text.Contains("Too many open files", StringComparison.OrdinalIgnoreCase))
            ? $" (the open-files limit, RLIMIT_NOFILE, is {OpenFiles.Limit()?.ToString() ?? "unknown"}: raise it with ulimit -n)"
            : "";

    private static string FdLimitNote(Exception e)
    {
        for (Exception? x = e; x is not null; x = x.InnerException)
            if (x is KvmException { Errno: 24 } || FdLimitNote(x.Message).Length > 0) return FdLimitNote("EMFILE");
        return "";
    }

    private static string OneLine(string text) => text.ReplaceLineEndings(" ").Trim();
}

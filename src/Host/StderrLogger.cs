using Akka.Actor;
using Akka.Dispatch;
using Akka.Event;

namespace KvmActors.Host;

/// <summary>
/// The CLI's Akka logger: one line per event on stderr, <c>[HH:mm:ss.fff WRN] message</c>, then the exception if
/// any (stdout carries only guest output). It replaced Serilog (with Akka.Logger.Serilog and its console sink),
/// whose loading and start-up cost ~60-80 ms of every <c>kvmactors run</c> for the same lines.
/// </summary>
public sealed class StderrLogger : UntypedActor, IRequiresMessageQueue<ILoggerMessageQueueSemantics>
{
    /// <summary>The value for <c>akka.loggers</c>.</summary>
    public const string TypeName = "KvmActors.Host.StderrLogger, kvmactors";

    protected override void OnReceive(object message)
    {
        switch (message)
        {
            case InitializeLogger:
                Sender.Tell(new LoggerInitialized());
                break;
            case LogEvent e:
                Write(e);
                break;
        }
    }

    private static void Write(LogEvent e)
    {
        var level = e.LogLevel() switch
        {
            LogLevel.DebugLevel => "DBG",
            LogLevel.InfoLevel => "INF",
            LogLevel.WarningLevel => "WRN",
            _ => "ERR",
        };
        var line = $"[{e.Timestamp.ToLocalTime():HH:mm:ss.fff} {level}] {e.Message}";
        if (e.Cause is { } cause) line += Environment.NewLine + cause;
        Console.Error.WriteLine(line);
    }
}

using System.Globalization;

namespace KvmActors.Host;

/// <summary>Thrown for a command line we cannot use; the program prints it with the usage and exits 2.</summary>
public sealed class UsageException(string message) : KvmActorsException(ErrorKind.Usage, message);

public sealed record RunOptions(
    string? ConfigPath,
    IReadOnlyList<string> Sets,
    TimeSpan? Timeout,
    string LogLevel,
    string? ReportPath = null);

public static class CommandLine
{
    public const string Usage = """
        usage: kvmactors run [CONFIG] [--set KEY=VALUE]... [--timeout DURATION] [--log-level LEVEL] [--report FILE]

          CONFIG            a guest file (HOCON); without it the built-in seed guest runs
          --set KEY=VALUE   override one setting, e.g. --set guest.vcpus=2 (repeatable)
          --timeout D       stop the VM once D (e.g. 500ms, 2s, 1m) has passed since start; exit 124
          --log-level L     verbose, debug, info, warning (default), error
          --report FILE     write the end report as JSON: how and why the VM ended, exit status,
                            each vCPU's final registers, exit counts by reason and port, restarts
        exit status: 0 the guest ended normally, 1 guest failure, 2 usage or config error, 124 timeout,
                     130 interrupted; a guest's debug-exit status where it used one

        """ + Bench.BenchOptions.Usage;

    public static RunOptions ParseRun(IReadOnlyList<string> args)
    {
        string? config = null;
        var sets = new List<string>();
        TimeSpan? timeout = null;
        var level = "warning";
        string? report = null;
        for (var i = 0; i < args.Count; i++)
        {
            var a = args[i];
            string Next() => i + 1 < args.Count ? args[++i] : throw new UsageException($"{a} needs a value");
            switch (a)
            {
                case "--set":
                    var kv = Next();
                    if (!kv.Contains('=')) throw new UsageException($"--set expects KEY=VALUE, got '{kv}'");
                    sets.Add(kv);
                    break;
                case "--timeout":
                    var t = Next();
                    timeout = ParseDuration(t) ?? throw new UsageException($"--timeout: '{t}' is not a duration (e.g. 500ms, 2s, 1m)");
                    break;
                case "--report":
                    report = Next();
                    break;
                case "--log-level":
                    level = Next().ToLowerInvariant();
                    if (level is not ("verbose" or "debug" or "info" or "warning" or "error"))
                        throw new UsageException($"--log-level: '{level}' is not one of verbose, debug, info, warning, error");
                    break;
                default:
                    if (a.StartsWith('-')) throw new UsageException($"unknown option '{a}'");
                    if (config is not null) throw new UsageException($"only one CONFIG may be given ('{config}', '{a}')");
                    config = a;
                    break;
            }
        }
        return new RunOptions(config, sets, timeout, level, report);
    }

    public static TimeSpan? ParseDuration(string text)
    {
        var units = new (string Suffix, double Seconds)[] { ("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600) };
        foreach (var (suffix, seconds) in units)
            if (text.EndsWith(suffix) && double.TryParse(text[..^suffix.Length], NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && v >= 0)
                return TimeSpan.FromSeconds(v * seconds);
        return double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var plain) && plain >= 0 ? TimeSpan.FromSeconds(plain) : null;
    }
}

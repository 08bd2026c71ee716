using System.CommandLine;
using System.CommandLine.Invocation;
using System.CommandLine.Parsing;
using System.Globalization;

namespace KvmActors.Host;

/// <summary>Thrown for a command line we cannot use; the program prints it and exits 2.</summary>
public sealed class UsageException(string message) : KvmActorsException(ErrorKind.Usage, message);

public sealed record RunOptions(
    string? ConfigPath,
    IReadOnlyList<string> Sets,
    TimeSpan? Timeout,
    string LogLevel,
    string? ReportPath = null,
    string? RestorePath = null,
    IReadOnlyList<Runtime.Config.GuestMemoryRange>? ReportMemory = null);

/// <summary>
/// The command line, on System.CommandLine: generated help (on stdout when asked for with --help, on stderr
/// with a usage error), suggestions for mistyped commands and options, and exit 2 for every usage error.
/// </summary>
public static class CommandLine
{
    /// <summary>
    /// Commands that parse their own arguments: the dispatcher hands them everything after their name.
    /// Hook one in with one line here, e.g. <c>new("serve", "host VMs behind an HTTP API", Serve.ServeCommand.RunAsync)</c>.
    /// </summary>
    public static readonly IReadOnlyList<ForwardedCommand> Forwarded =
    [
        new("serve", "host many VMs behind an HTTP API on a Unix socket (or loopback TCP)", Serve.ServeCommand.RunAsync),
        new("vm", "drive a kvmactors serve host: create, list, show, pause, resume, stop, rm, console", VmClient.VmClientCommand.RunAsync),
        new("qemu", "run a test kernel from the subset of QEMU's command line test harnesses use (README: test kernels)", Qemu.QemuCommand.RunAsync),
        new("bench density", "per-VM cost: N halted VMs in one process (RSS, threads, fds, create latency, stop-all)", Bench.DensityBench.RunAsync),
    ];

    public sealed record ForwardedCommand(string Name, string Description, Func<string[], Task<int>> RunAsync);

    /// <summary>The longest --timeout: Task.Delay and timers take at most about 49 days.</summary>
    public static readonly TimeSpan MaxTimeout = TimeSpan.FromDays(30);

    public static async Task<int> InvokeAsync(string[] args)
    {
        if (args is ["help", .. var rest]) args = [.. rest, "--help"];
        // A forwarded name may be two words ("bench density"): it matches the first words of the command line.
        if (Forwarded.FirstOrDefault(f => f.Name.Split(' ') is var words && args.Length >= words.Length && args.AsSpan(0, words.Length).SequenceEqual(words))
            is { } forwarded)
            return await forwarded.RunAsync(args[forwarded.Name.Split(' ').Length..]);

        StartupTrace.Mark("cl-start");
        var root = Root();
        StartupTrace.Mark("cl-root");
        if (args.Length == 0)
        {
            await root.Parse(["--help"]).InvokeAsync(Invocation(Console.Error));
            return ExitCodes.Usage;
        }
        var parsed = root.Parse(args);
        StartupTrace.Mark("cl-parsed");
        if (parsed.Errors.Count > 0)
        {
            // The errors and System.CommandLine's "did you mean" suggestions, on stderr, without the help text.
            if (parsed.Action is ParseErrorAction errors) errors.ShowHelp = false;
            await parsed.InvokeAsync(Invocation(Console.Error));
            var command = parsed.CommandResult.Command;
            Console.Error.WriteLine($"kvmactors: usage error (see kvmactors {(command is RootCommand ? "" : command.Name + " ")}--help)");
            return ExitCodes.Usage;
        }
        return await parsed.InvokeAsync(Invocation(Console.Out));
    }

    private static InvocationConfiguration Invocation(TextWriter output) => new()
    {
        Output = output,
        Error = Console.Error,
        // Errors are mapped to exit statuses in one place (Program.cs, ErrorReport); signals are the run's own.
        EnableDefaultExceptionHandler = false,
        ProcessTerminationTimeout = null,
    };

    private static RootCommand Root()
    {
        var root = new RootCommand("kvmactors: a virtual machine monitor for Linux KVM on Akka.NET. " +
                                   "stdout carries exactly the guest's serial output; logs and the end summary go to stderr.");
        root.Subcommands.Add(Run());
        root.Subcommands.Add(Bench.BenchOptions.Command());
        root.Subcommands.Add(Test.TestCommand.Command());
        // Listed for help and suggestions; InvokeAsync hands them their arguments before parsing.
        foreach (var f in Forwarded.Where(f => !f.Name.Contains(' '))) root.Subcommands.Add(new Command(f.Name, f.Description));
        return root;
    }

    /// <summary>The --gdb options as the guest.gdb settings they stand for (so the file's block and the flags meet in one binder).</summary>
    private static IEnumerable<string> GdbSets(string? listen, bool wait, bool allowRemote)
    {
        if (listen is not null) yield return $"guest.gdb.listen = \"{listen.Replace("\\", "\\\\").Replace("\"", "\\\"")}\"";
        if (wait) yield return "guest.gdb.wait = true";
        if (allowRemote) yield return "guest.gdb.allow-remote = true";
    }

    private static Command Run()
    {
        var config = new Argument<string?>("CONFIG")
        {
            Description = "a guest file (HOCON); without it the built-in seed guest runs",
            Arity = ArgumentArity.ZeroOrOne,
        };
        // A mistyped option would otherwise be taken for CONFIG: name it, with the options it may have meant.
        config.Validators.Add(r =>
        {
            if (r.Tokens is [{ Value: ['-', ..] text }])
                r.AddError($"unknown option '{text}'{Suggestions(text, r.Parent is CommandResult c ? c.Command : null)}");
        });
        var set = new Option<string[]>("--set")
        {
            Description = "override one setting, e.g. --set guest.vcpus=2 (repeatable)",
            HelpName = "KEY=VALUE",
            Arity = ArgumentArity.OneOrMore,
        };
        set.Validators.Add(r =>
        {
            foreach (var t in r.Tokens.Where(t => !t.Value.Contains('=')))
                r.AddError($"--set expects KEY=VALUE, got '{t.Value}'");
        });
        var timeout = new Option<TimeSpan?>("--timeout")
        {
            Description = $"stop the VM once D (e.g. 500ms, 2s, 1m, 1h; at most {MaxTimeout.TotalDays:0} days) has passed since start; exit 124",
            HelpName = "D",
            CustomParser = r => ParseTimeout(r),
        };
        var logLevel = new Option<string>("--log-level")
        {
            Description = "verbose, debug, info, warning (default), error: to stderr",
            HelpName = "LEVEL",
            DefaultValueFactory = _ => "warning",
            CustomParser = r =>
            {
                var level = r.Tokens.Single().Value.ToLowerInvariant();
                if (level is "verbose" or "debug" or "info" or "warning" or "error") return level;
                r.AddError($"--log-level: '{level}' is not one of verbose, debug, info, warning, error");
                return null;
            },
        };
        var report = new Option<string?>("--report")
        {
            Description = "write the end report as JSON: how and why the VM ended, exit status, each vCPU's final " +
                          "registers, exit counts by reason and port, restarts",
            HelpName = "FILE",
        };
        var reportMemory = new Option<Runtime.Config.GuestMemoryRange[]>("--report-memory")
        {
            Description = "read guest memory [ADDR, ADDR+LEN) when the VM ends into the report (--report's JSON, and a hex dump " +
                          "on stderr); ADDR and LEN decimal, 0x-hex or sizes (4K); within one memory region; repeatable",
            HelpName = "ADDR:LEN",
            CustomParser = r => r.Tokens.Select(t => ParseMemoryRange(t.Value, r)).OfType<Runtime.Config.GuestMemoryRange>().ToArray(),
        };
        var gdb = new Option<string?>("--gdb")
        {
            Description = "serve the GDB remote protocol for this guest on tcp:HOST:PORT (tcp::1234 is loopback) or unix:PATH " +
                          "(same as guest.gdb.listen); one debugger at a time",
            HelpName = "ADDRESS",
        };
        var gdbWait = new Option<bool>("--gdb-wait") { Description = "no vCPU runs until gdb has attached and continued (QEMU's -S)" };
        var gdbRemote = new Option<bool>("--gdb-allow-remote") { Description = "let --gdb listen on a non-loopback address" };
        var restore = new Option<string?>("--restore")
        {
            Description = "run on a VM saved by a snapshot (kvmactors vm snapshot) from where it was; the guest, its devices " +
                          "and settings come from the snapshot, so no CONFIG, --set or --gdb is given",
            HelpName = "DIR",
        };
        var run = new Command("run", "run a guest. Exit status: 0 the guest ended normally, 1 guest failure or host error, " +
                                     "2 usage or config error, 124 timeout, 129 SIGHUP, 130 SIGINT, 141 stdout closed, 143 SIGTERM; " +
                                     "a guest's debug-exit status where it used one")
        {
            config, set, timeout, logLevel, report, reportMemory, gdb, gdbWait, gdbRemote, restore,
        };
        run.Validators.Add(r =>
        {
            if (r.GetValue(restore) is null) return;
            if (r.GetValue(config) is not null) r.AddError("--restore takes the guest from the snapshot: give no CONFIG with it");
            if (r.GetValue(set) is { Length: > 0 } || r.GetValue(gdb) is not null || r.GetValue(gdbWait))
                r.AddError("--restore runs the snapshot's guest as it was saved: --set and --gdb cannot be combined with it");
        });
        run.SetAction((p, _) => new RunCommand(new RunOptions(
            p.GetValue(config), [.. p.GetValue(set) ?? [], .. GdbSets(p.GetValue(gdb), p.GetValue(gdbWait), p.GetValue(gdbRemote))],
            p.GetValue(timeout), p.GetValue(logLevel)!, p.GetValue(report), p.GetValue(restore), p.GetValue(reportMemory))).RunAsync());
        return run;
    }

    /// <summary>ADDR:LEN, both numbers or sizes, LEN above 0 and the range within the 64-bit address space.</summary>
    private static Runtime.Config.GuestMemoryRange? ParseMemoryRange(string text, ArgumentResult r)
    {
        var colon = text.IndexOf(':');
        if (colon > 0 && ConfigNumbers.TryParse(text[..colon], out var address) && ConfigNumbers.TryParse(text[(colon + 1)..], out var length)
            && length > 0 && length <= ulong.MaxValue - address)
            return new(address, length);
        r.AddError($"--report-memory {text}: expected ADDR:LEN (e.g. 0x1000:256 or 0:4K), LEN above 0");
        return null;
    }

    internal static string Suggestions(string typed, Command? command)
    {
        var near = (command?.Options ?? []).Select(o => o.Name).Where(name => Distance(typed, name) <= 2).ToList();
        return near.Count > 0 ? $"; did you mean {string.Join(" or ", near)}?" : "";
    }

    /// <summary>Levenshtein distance, for the few option names of a command.</summary>
    private static int Distance(string a, string b)
    {
        var row = Enumerable.Range(0, b.Length + 1).ToArray();
        for (var i = 1; i <= a.Length; i++)
        {
            var diagonal = row[0];
            row[0] = i;
            for (var j = 1; j <= b.Length; j++)
            {
                var above = row[j];
                row[j] = Math.Min(Math.Min(row[j] + 1, row[j - 1] + 1), diagonal + (a[i - 1] == b[j - 1] ? 0 : 1));
                diagonal = above;
            }
        }
        return row[b.Length];
    }

    internal static TimeSpan? ParseTimeout(ArgumentResult r)
    {
        var text = r.Tokens.Single().Value;
        if (ParseDuration(text) is { } t)
        {
            if (t <= MaxTimeout) return t;
            r.AddError($"--timeout: '{text}' is longer than the longest timeout ({MaxTimeout.TotalDays:0} days)");
        }
        else r.AddError($"--timeout: '{text}' is not a duration (e.g. 500ms, 2s, 1m)");
        return null;
    }

    /// <summary>A non-negative, finite duration (<c>500ms</c>, <c>2s</c>, <c>1m</c>, <c>1h</c>, plain seconds; TimeSpan.MaxValue past it), or null.</summary>
    public static TimeSpan? ParseDuration(string text)
    {
        var units = new (string Suffix, double Seconds)[] { ("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600), ("", 1) };
        foreach (var (suffix, seconds) in units)
        {
            if (!text.EndsWith(suffix, StringComparison.Ordinal)) continue;
            if (!double.TryParse(text[..^suffix.Length], NumberStyles.Float, CultureInfo.InvariantCulture, out var v)) continue;
            // NaN, infinities, negatives and values TimeSpan cannot hold are not durations.
            var total = v * seconds;
            if (!double.IsFinite(total) || total < 0) return null;
            return total < TimeSpan.MaxValue.TotalSeconds ? TimeSpan.FromSeconds(total) : TimeSpan.MaxValue;
        }
        return null;
    }
}

using System.CommandLine;

namespace KvmActors.Host.Test;

/// <summary><c>kvmactors test GUEST.conf... [--jobs N] [--junit FILE] [--tap] [--timeout D] [--config FILE]</c>.</summary>
public static class TestCommand
{
    public const int MaxJobs = 1024;

    public static Command Command()
    {
        var guests = new Argument<string[]>("GUEST")
        {
            Description = "guest files (HOCON) to run, each checked against its guest.expect block",
            Arity = ArgumentArity.OneOrMore,
        };
        var command = new Command("test", "run many guest files as a test suite in one process, each checked against its guest.expect " +
                                          "(status, output-contains, output-matches, timeout). Progress and the summary go to stderr; stdout carries " +
                                          "the TAP stream with --tap, else nothing. Exit status: 0 all passed, 1 any failed (a guest file with a " +
                                          "config error is a failed test), 2 usage or --config error, 129/130/143 stopped by a signal");
        guests.Validators.Add(r =>
        {
            foreach (var t in r.Tokens.Where(t => t.Value.StartsWith('-') && t.Value.Length > 1))
                r.AddError($"unknown option '{t.Value}'{CommandLine.Suggestions(t.Value, command)}");
        });
        var jobs = new Option<int>("--jobs", "-j")
        {
            Description = $"how many guests run at once (default: the number of CPUs, {Environment.ProcessorCount} here; 1..{MaxJobs})",
            HelpName = "N",
            DefaultValueFactory = _ => Environment.ProcessorCount,
        };
        jobs.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<int>() is < 1 or > MaxJobs) r.AddError($"--jobs: {r.GetValueOrDefault<int>()} is outside 1..{MaxJobs}");
        });
        var junit = new Option<string?>("--junit") { Description = "write the results as JUnit XML to FILE", HelpName = "FILE" };
        var tap = new Option<bool>("--tap") { Description = "write the results as TAP version 13 to stdout" };
        var timeout = new Option<TimeSpan?>("--timeout")
        {
            Description = "how long each guest may run when its guest.expect.timeout is not set (default kvmactors.test.default-timeout, 60s); " +
                          "a guest stopped at its timeout ends with status 124",
            HelpName = "D",
            CustomParser = r => CommandLine.ParseTimeout(r),
        };
        var config = new Option<string?>("--config")
        {
            Description = "the runner's settings (HOCON): test { default-timeout, output-kept } and kvmactors { ... } runtime settings for all guests",
            HelpName = "FILE",
        };
        var logLevel = new Option<string>("--log-level") { Description = "verbose, debug, info, warning (default), error: to stderr", HelpName = "LEVEL", DefaultValueFactory = _ => "warning" };
        logLevel.AcceptOnlyFromAmong("verbose", "debug", "info", "warning", "error");
        command.Arguments.Add(guests);
        foreach (var o in new Option[] { jobs, junit, tap, timeout, config, logLevel }) command.Options.Add(o);
        command.SetAction(async (p, _) =>
        {
            var settings = TestSettings.Load(p.GetValue(config));
            return await new SuiteRunner(new TestOptions(p.GetValue(guests)!, p.GetValue(jobs), p.GetValue(junit), p.GetValue(tap),
                p.GetValue(timeout), p.GetValue(logLevel)!), settings).RunAsync();
        });
        return command;
    }
}

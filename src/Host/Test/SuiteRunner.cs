using System.Diagnostics;
using System.Text;
using Akka.Actor;
using KvmActors.Host.Serve;
using KvmActors.Runtime.Config;
using KvmActors.Runtime.Vm;
using KvmActors.Sdk;
using Microsoft.Win32.SafeHandles;
using Serilog;

namespace KvmActors.Host.Test;

public sealed record TestOptions(IReadOnlyList<string> Files, int Jobs, string? JUnitPath, bool Tap, TimeSpan? Timeout, string LogLevel);

/// <summary>
/// <c>kvmactors test</c>: many guest files in one actor system, at most <c>--jobs</c> at a time, each VM hosted by the
/// same <see cref="VmHost"/> as <c>serve</c>'s (its console kept in a bounded ring, its end recorded), each with its
/// own timeout and checked against its <c>guest.expect</c>. A guest file that cannot be loaded is a failed test (the
/// others still run). SIGINT/SIGTERM/SIGHUP stop every VM, leave the queued guests not run, and the summary, TAP
/// stream and JUnit file are still written.
/// </summary>
public sealed class SuiteRunner(TestOptions options, TestSettings settings)
{
    public async Task<int> RunAsync()
    {
        // As for run: VM set-ups block pool threads while the end path (timers, continuations) needs them.
        ThreadPool.GetMinThreads(out var workers, out var io);
        ThreadPool.SetMinThreads(Math.Max(workers, 32 + options.Jobs), io);
        using var stops = new StopRequests(null);
        // fd 1 carries only the TAP stream; Console.Out (anything the runtime writes there) goes to stderr.
        var stderr = RunCommand.StderrWriter();
        Console.SetError(stderr);
        Console.SetOut(stderr);
        using var stdout = options.Tap
            ? new StreamWriter(new FileStream(new SafeFileHandle(1, ownsHandle: false), FileAccess.Write, bufferSize: 0), new UTF8Encoding(false))
            : null;
        Log.Logger = ServeLogging.CreateLogger(options.LogLevel);
        var system = ActorSystem.Create("kvmactors", KvmActorsConfig.WithDefaults(settings.RuntimeConfig.IsEmpty ? RunCommand.AkkaConfig(options.LogLevel) : RunCommand.AkkaConfig(options.LogLevel).WithFallback(settings.RuntimeConfig)));
        var allStopped = true;
        try
        {
            // The runner bounds the VMs by --jobs; the host keeps no ended VM (each result keeps its own output).
            var host = new VmHost(system, HostSettings.Default with
            {
                MaxVms = int.MaxValue, MaxVcpusTotal = int.MaxValue, MaxMemoryTotal = ulong.MaxValue, ConsoleRing = settings.OutputKept, MaxEndedKept = 0,
            }, Environment.CurrentDirectory, reportDir: null);
            var started = DateTimeOffset.UtcNow;
            var wall = Stopwatch.StartNew();
            var tap = stdout is null ? null : new TapStream(stdout, options.Files.Count);
            var progress = new SuiteProgress(stderr, options.Files.Count, terminal: !Console.IsErrorRedirected);
            using var slots = new SemaphoreSlim(options.Jobs);
            // Not disposed: the signal's continuation may cancel it at any time, also after the suite.
            var stopped = new CancellationTokenSource();
            _ = stops.First.ContinueWith(_ => stopped.Cancel(), TaskScheduler.Default);
            // Guests start in command-line order, each once a slot is free; one that a stop keeps from starting is not run.
            var running = new List<Task<TestResult>>();
            for (var i = 0; i < options.Files.Count; i++)
            {
                var (number, file) = (i + 1, options.Files[i]);
                var slot = true;
                try { await slots.WaitAsync(stopped.Token); }
                catch (OperationCanceledException) { slot = false; }
                if (!slot || stops.First.IsCompleted)
                {
                    if (slot) slots.Release();
                    running.Add(Task.FromResult(Reported(NotRun(number, file, stops))));
                    continue;
                }
                running.Add(Task.Run(async () =>
                {
                    try { return Reported(await RunOneAsync(host, number, file, stops, progress)); }
                    finally { slots.Release(); }
                }));
            }
            var results = await Task.WhenAll(running);
            TestResult Reported(TestResult r)
            {
                progress.Ended(r);
                tap?.Add(r);
                return r;
            }
            allStopped = results.All(r => r.Failures.All(f => f.Kind != TestFailure.Stuck));
            progress.Summary(results, wall.Elapsed, options.Jobs);
            var status = results.Any(r => r.Verdict != TestVerdict.Passed) ? ExitCodes.Failure : ExitCodes.Ok;
            if (stops.First.IsCompleted && results.Any(r => r.Verdict == TestVerdict.NotRun || r.Failures.Any(f => f.Kind == TestFailure.Interrupted)))
                status = stops.First.Result.Status;
            if (options.JUnitPath is { } junit)
            {
                try { JUnitReport.Write(junit, JUnitReport.Build(results, wall.Elapsed, started)); }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
                {
                    stderr.WriteLine($"kvmactors test: could not write the JUnit file {junit}: {e.Message}");
                    if (status == ExitCodes.Ok) status = ExitCodes.Failure;
                }
            }
            return status;
        }
        finally
        {
            // As for run: a VM that did not stop would hold up the actor system's termination; the exit ends it instead.
            var shutdown = Task.Delay(settings.StopGrace);
            if (allStopped) await Task.WhenAny(system.Terminate(), shutdown);
            await Task.WhenAny(Log.CloseAndFlushAsync().AsTask(), shutdown);
        }
    }

    private static TestResult NotRun(int number, string file, StopRequests stops) =>
        new(number, file, "", TestVerdict.NotRun, [new(TestFailure.Interrupted, $"not run: {stops.First.Result.Why}")], null, 0, TimeSpan.Zero);

    private async Task<TestResult> RunOneAsync(VmHost host, int number, string file, StopRequests stops, SuiteProgress progress)
    {
        var clock = Stopwatch.StartNew();
        progress.Started(number, file);
        var id = $"t{number}";
        GuestSpec spec;
        try { spec = Load(file, id); }
        catch (KvmActorsException e) when (e.Kind is ErrorKind.Config or ErrorKind.Usage)
        {
            return new TestResult(number, file, "", TestVerdict.Failed, [new(TestFailure.Config, $"config error: {e.Message}")], null, 0, clock.Elapsed);
        }
        if (stops.First.IsCompleted) return NotRun(number, file, stops);
        var expect = spec.Expect;
        var timeout = expect.Timeout ?? options.Timeout ?? settings.DefaultTimeout;
        var vm = host.Run(spec, id);
        // Cancelled once the guest has ended, so no timer outlives its test (a cancelled delay raises nothing).
        using var running = new CancellationTokenSource();
        var deadline = Task.Delay(timeout, running.Token);
        StopRequest? stop = null;
        var first = await Task.WhenAny(vm.Finished.Task, deadline, stops.First);
        running.Cancel();
        if (first != vm.Finished.Task)
        {
            stop = first == deadline ? new StopRequest(ExitCodes.Timeout, $"timeout after {Expectations.Duration(timeout)}") : stops.First.Result;
            await host.StopAsync(vm, stop.Why, settings.StopWait);
        }
        var kept = vm.Console.Read(0);
        var output = Encoding.UTF8.GetString(kept.Bytes);
        var total = vm.Console.Total;
        if (vm.Ended is not { } ended)
            return new TestResult(number, file, spec.Name, TestVerdict.Failed,
                [new(TestFailure.Stuck, $"{stop!.Why}; the VM had not ended {settings.StopWait.TotalMilliseconds:0} ms after its stop")],
                null, expect.Status, clock.Elapsed, output, total);
        var status = RunCommand.StatusOf(ended, stop);
        var endText = $"{ended.Reason}: {ended.Detail}" + (ended.Failure is { } f ? "\n" + f.Describe() : "");
        List<TestFailure> failures = stop is not null && stop.Status != ExitCodes.Timeout && ended.Reason == Sdk.VmEndReason.StoppedOnRequest
            ? [new(TestFailure.Interrupted, $"interrupted: {stop.Why}")]
            : [.. Expectations.Check(expect, status, $"{ended.Reason}: {OneLine(ended.Detail)}", output, kept.FirstKept > 0, timeout,
                timedOut: stop?.Status == ExitCodes.Timeout && ended.Reason == Sdk.VmEndReason.StoppedOnRequest)];
        return new TestResult(number, file, spec.Name, failures.Count == 0 ? TestVerdict.Passed : TestVerdict.Failed, failures,
            status, expect.Status, clock.Elapsed, output, total, endText);
    }

    /// <summary>
    /// The guest file, bound once to check it (and read its expectations), then again with its console attached to the
    /// VM's ring: every stdout/stderr sink and COM1 (whose input is then empty: guests share no stdin).
    /// </summary>
    private static GuestSpec Load(string file, string id)
    {
        var checkedSpec = GuestConfigLoader.LoadFile(file);
        if (!checkedSpec.RuntimeConfig.IsEmpty)
            throw new ConfigException(file, "kvmactors", "runtime settings cannot differ between the guests of one suite (they share one actor system): give them to kvmactors test --config");
        var merged = HoconText.Parse(checkedSpec.SourceConfig, file, checkedSpec.BaseDirectory);
        return GuestConfigLoader.LoadFile(file, [.. GuestPreparation.ConsoleSets(merged, id)]);
    }

    private static string OneLine(string text) => text.ReplaceLineEndings(" ").Trim();
}

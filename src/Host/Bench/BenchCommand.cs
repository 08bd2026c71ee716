using System.CommandLine.Parsing;
using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Akka.Actor;
using Akka.Configuration;
using KvmActors.Runtime.Config;
using KvmActors.Runtime.Vcpu;
using KvmActors.Runtime.Vm;
using KvmActors.Sdk;

namespace KvmActors.Host.Bench;

public sealed record BenchOptions(
    long Iterations,
    int Rounds,
    IReadOnlyList<int> VcpuCounts,
    IReadOnlyList<Workload> Workloads,
    string? JsonPath,
    int StartupRuns,
    bool Native,
    string? ExitbenchSource,
    bool Quick,
    bool Ablation = false,
    int Repeats = 2)
{
    /// <summary><c>kvmactors bench</c>'s options (System.CommandLine: generated help, exit 2 on a usage error).</summary>
    public static Command Command()
    {
        var quick = new Option<bool>("--quick") { Description = "N=5000, 3 rounds, 3 start-up runs: a first look in well under a minute" };
        var n = Positive("--n", "N", 1L << 31, "guest loop iterations per vCPU (default 20000; out = N exits, inout = 2N exits)");
        var rounds = Positive("--rounds", "R", 1000, "rounds; each round runs every workload and vCPU count once per variant, " +
                                                      "rotating which variant goes first (default 9, the least the exit-path target is checked over)");
        var startup = new Option<long?>("--startup-runs")
        {
            HelpName = "K",
            Description = "child processes per start-up figure, 0 to skip (default 15)",
            CustomParser = r => r.Tokens.Single().Value == "0" ? 0 : PositiveValue(r, "--startup-runs", 1000),
        };
        var vcpus = new Option<IReadOnlyList<int>>("--vcpus")
        {
            HelpName = "LIST",
            Description = "vCPU counts (default 1,2,4)",
            DefaultValueFactory = _ => [1, 2, 4],
            CustomParser = r => Items(r).Select(v => (int)PositiveValue(r, "--vcpus", 64, v)).Distinct().ToList(),
        };
        var workloads = new Option<IReadOnlyList<Workload>>("--workloads")
        {
            HelpName = "LIST",
            Description = "out, inout (default both)",
            DefaultValueFactory = _ => [Workload.Out, Workload.InOut],
            CustomParser = r => Items(r).Select(w => w switch
            {
                "out" => Workload.Out,
                "inout" => Workload.InOut,
                _ => Fail(r, $"--workloads: '{w}' is not out or inout", Workload.Out),
            }).Distinct().ToList(),
        };
        var noNative = new Option<bool>("--no-native") { Description = "skip the C exitbench reference (compiled with gcc at bench time)" };
        var exitbench = new Option<string?>("--exitbench")
        {
            HelpName = "PATH",
            Description = "exitbench.c (default: shared/reference/exitbench.c found above this directory)",
        };
        var ablation = new Option<bool>("--ablation")
        {
            Description = "also run the actor runtime with each part of the exit-path design switched off " +
                          "(thread-pool devices, no read snapshots, one exit per message, all three)",
        };
        var repeats = Positive("--repeats", "K", 100, "runs of each variant per round, in palindrome order (A B B A: default 2; 1 = A B)");
        var json = new Option<string?>("--json") { HelpName = "FILE", Description = "also write the results as JSON" };
        var command = new Command("bench", "the exit path of the actor runtime against a plain loop, side by side in this process, " +
                                           "and the start-up time of `kvmactors run` against exitbench.c; prints a table (exit status 0, 1 without KVM)")
        {
            quick, n, rounds, repeats, vcpus, workloads, startup, noNative, exitbench, ablation, json,
        };
        command.Validators.Add(r =>
        {
            if (r.GetValue(vcpus) is { Count: 0 } || r.GetValue(workloads) is { Count: 0 }) r.AddError("bench: nothing to run");
        });
        command.SetAction((p, _) =>
        {
            var q = p.GetValue(quick);
            return BenchCommand.RunAsync(new BenchOptions(p.GetValue(n) ?? (q ? 5000 : 20000), (int)(p.GetValue(rounds) ?? (q ? 3 : 9)),
                p.GetValue(vcpus)!, p.GetValue(workloads)!, p.GetValue(json), (int)(p.GetValue(startup) ?? (q ? 3 : 15)),
                !p.GetValue(noNative), p.GetValue(exitbench), q, p.GetValue(ablation), (int)(p.GetValue(repeats) ?? (q ? 1 : 2))));
        });
        return command;
    }

    private static Option<long?> Positive(string name, string helpName, long max, string description) => new(name)
    {
        HelpName = helpName,
        Description = description,
        CustomParser = r => PositiveValue(r, name, max),
    };

    private static long PositiveValue(ArgumentResult r, string name, long max, string? text = null)
    {
        text ??= r.Tokens.Single().Value;
        return long.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) && v >= 1 && v <= max
            ? v : Fail(r, $"{name}: '{text}' is not a number in 1..{max}", 1L);
    }

    private static IEnumerable<string> Items(ArgumentResult r) =>
        r.Tokens.Single().Value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    private static T Fail<T>(ArgumentResult r, string error, T placeholder)
    {
        r.AddError(error);
        return placeholder;
    }
}

/// <summary>
/// <c>kvmactors bench</c>: the exit path of the actor runtime against a hand-written loop, side by side in one
/// process (see <see cref="InlineRunner"/>, <see cref="ActorRunner"/>), and start-up time against exitbench.c.
/// <para>What is timed, per run: from the first vCPU's start marker to the last vCPU's end marker (see
/// <see cref="BenchGuests"/>). VM creation, actor and thread start-up, the in-guest start barrier, HLT and
/// teardown are outside the interval. exits/s = COM1 exits of all vCPUs / that interval.</para>
/// </summary>
public static class BenchCommand
{
    /// <summary>A way to run the guest: the inline loop, or the actor runtime with some settings.</summary>
    private sealed record Variant(string Name, string Description, string? AkkaOverrides)
    {
        public bool IsInline => AkkaOverrides is null;
        /// <summary>An inline loop whose vCPU threads block the kick signal outside KVM_RUN as the runtime's do (KVM_SET_SIGNAL_MASK).</summary>
        public bool InlineSignalMask { get; init; }
        public ActorSystem? System;
        public VmSettings? Settings;
    }

    private static readonly Variant InlineVariant = new("inline", "plain loop per vCPU thread, exits handled inline", null);
    private static readonly Variant ActorsVariant = new("actors", "the runtime as configured by default", "");

    // --ablation: the actor runtime with one part of the exit-path design (or all three) switched off.
    private static readonly Variant[] Ablations =
    [
        new("pool-devices", "device actors on the thread pool (default dispatcher)", "kvmactors.device-dispatcher.type = Dispatcher"),
        new("no-snapshot", "every IN a round trip (read snapshots off)", "kvmactors.devices.read-snapshots = off"),
        new("exit-per-msg", "one RunGuest message per exit", "kvmactors.vcpu.exits-per-message = 1"),
        new("no-snapshot-wait", "an IN finding writes in flight does the round trip at once (read-snapshot-wait = 0s)", "kvmactors.devices.read-snapshot-wait = 0s"),
        new("inline-sigmask", "the inline loop with the runtime's kick signal mask (KVM_SET_SIGNAL_MASK: swapped on every KVM_RUN)", null)
        {
            InlineSignalMask = true,
        },
        new("before", "pool devices, no snapshots, one exit per message: the exit path before issue 6",
            "kvmactors.device-dispatcher.type = Dispatcher\nkvmactors.devices.read-snapshots = off\nkvmactors.vcpu.exits-per-message = 1"),
    ];

    private sealed record Cell(Workload Workload, int Vcpus)
    {
        public readonly Dictionary<string, List<double>> Rate = new(), Ratio = new(), Cpu = new(), Outside = new(), Inside = new(),
            CpuOutside = new(), Alloc = new(), Busy = new(), PoolRuns = new();
        public readonly List<double> Native = new();
        public long FastReads, SlowReads, WaitedReads; // COM1 INs answered from the read snapshot / by a round trip / from it after a wait (actors)

        public List<double> Of(Dictionary<string, List<double>> d, string variant) =>
            d.TryGetValue(variant, out var l) ? l : d[variant] = new List<double>();
    }

    /// <summary>One variant's runs in one round, added up.</summary>
    private sealed class RoundSum
    {
        public long Exits;
        public TimeSpan Elapsed, Cpu;
        public ExitTiming.Totals Timing;
        public long PoolRuns;

        public void Add(long exits, TimeSpan elapsed, TimeSpan cpu, ExitTiming.Totals t)
        {
            Exits += exits;
            Elapsed += elapsed;
            Cpu += cpu;
            var s = Timing;
            Timing = new ExitTiming.Totals(s.Exits + t.Exits, s.InsideMicroseconds + t.InsideMicroseconds, s.OutsideMicroseconds + t.OutsideMicroseconds,
                s.CpuSamples + t.CpuSamples, s.CpuOutsideMicroseconds + t.CpuOutsideMicroseconds, s.AllocatedBytes + t.AllocatedBytes,
                s.DeviceTells + t.DeviceTells, s.DeviceBusy + t.DeviceBusy);
        }
    }

    public static async Task<int> RunAsync(BenchOptions o)
    {
        var kvm = RuntimeSettingsBinder.Default.KvmDevice;
        if (KvmActors.Runtime.Kvm.KvmSystem.Unavailable(kvm) is { } why)
        {
            Console.Error.WriteLine($"kvmactors bench: {kvm} unavailable: {why}");
            return ExitCodes.GuestFailure;
        }

        using var native = o.Native ? NativeReference.Prepare(o.ExitbenchSource) : null;
        var cells = (from w in o.Workloads from v in o.VcpuCounts select new Cell(w, v)).ToList();
        List<Variant> variants = [InlineVariant, ActorsVariant, .. o.Ablation ? Ablations : []];

        Console.WriteLine($"kvmactors bench: N={o.Iterations} iterations per vCPU, {o.Rounds} rounds of {o.Repeats} run(s) per variant, {Environment.ProcessorCount} host CPUs, load average {LoadAverage()}");
        Console.WriteLine("timed: first vCPU's start marker to last vCPU's end marker (VM creation, thread/actor start, teardown excluded)");
        if (native?.Skipped is { } skipped) Console.WriteLine($"C exitbench reference skipped: {skipped}");

        var clockCost = ExitTiming.MeasureClockCostMicroseconds();
        IReadOnlyList<(string Layer, double Nanoseconds)> layers = [];
        ExitTiming.Enabled = true; // two timestamps per exit, in both variants alike
        try
        {
            foreach (var v in variants.Where(v => !v.IsInline))
            {
                v.System = ActorSystem.Create($"kvmactors-bench-{v.Name}", KvmActorsConfig.WithDefaults(ConfigurationFactory.ParseString($"""
                    akka.loglevel = WARNING
                    akka.stdout-loglevel = WARNING
                    akka.log-dead-letters = off
                    akka.log-dead-letters-during-shutdown = off
                    {v.AkkaOverrides}
                    """)));
                v.Settings = RuntimeSettingsBinder.Bind(v.System.Settings.Config, "<bench>", BuiltInDevices.Assemblies);
            }
            var kvmDevice = ActorsVariant.Settings!.KvmDevice;
            var timeout = TimeSpan.FromSeconds(Math.Max(60, o.Iterations / 1000.0));

            var nice = ActorsVariant.Settings!.VcpuThreadNice;
            var kickSignal = ActorsVariant.Settings!.KickSignal;
            Console.WriteLine($"vCPU threads of every variant at nice {nice} (kvmactors.vcpu.thread-nice); " +
                              $"thread CPU clock: {clockCost:F2} µs per read, subtracted from each sampled exit");
            async Task<(long Exits, TimeSpan Elapsed, TimeSpan Cpu, long Fast, long Slow, long Waited)> RunOne(Variant v, GuestSpec spec, string runId)
            {
                ExitTiming.TakeAndReset();
                ExitTiming.TakePoolRuns();
                if (v.IsInline)
                {
                    var r = InlineRunner.Run(spec, kvmDevice, nice, v.InlineSignalMask ? kickSignal : 0);
                    return (r.ComExits, r.Elapsed, r.Cpu, 0, 0, 0);
                }
                var a = await ActorRunner.RunAsync(v.System!, v.Settings!, spec, runId, timeout);
                return (a.ComExits, a.Elapsed, a.Cpu, a.FastReads, a.SlowReads, a.WaitedReads);
            }

            // Warm-up, not counted: every cell once per variant, so the code measured is the JIT's optimised
            // tier and not its first tier (tiered compilation recompiles hot methods in the background after
            // ~30 calls and a 100 ms delay), then a pause until that background compilation is done.
            Console.Error.Write("warm-up...");
            foreach (var cell in cells)
                foreach (var v in variants)
                    await RunOne(v, BenchGuests.Spec(cell.Workload, cell.Vcpus, o.Iterations, "warm"), "warm");
            await JitSettled();

            for (var round = 0; round < o.Rounds; round++)
            {
                Console.Error.Write($"\rround {round + 1}/{o.Rounds}...");
                foreach (var cell in cells)
                {
                    var expected = o.Iterations * cell.Workload.ExitsPerIteration() * cell.Vcpus;
                    // Rotate which variant goes first, per round and per cell.
                    var shift = round + cells.IndexOf(cell);
                    var order = Enumerable.Range(0, variants.Count).Select(k => variants[(k + shift) % variants.Count]).ToList();
                    // Each variant o.Repeats times, in palindrome order (A B B A ...): a drift in the machine's speed
                    // during the round (other processes' load) weighs on every variant alike.
                    var runs = Enumerable.Range(0, o.Repeats).SelectMany(k => k % 2 == 0 ? order : Enumerable.Reverse(order)).ToList();
                    var sums = variants.ToDictionary(v => v.Name, _ => new RoundSum());
                    foreach (var (v, k) in runs.Select((v, k) => (v, k)))
                    {
                        var runId = $"r{round}-{cell.Workload.Name()}-{cell.Vcpus}-{v.Name}-{k}";
                        var r = await RunOne(v, BenchGuests.Spec(cell.Workload, cell.Vcpus, o.Iterations, runId), runId);
                        if (r.Exits != expected)
                            throw new InvalidOperationException($"{v.Name} {cell.Workload.Name()} x{cell.Vcpus}: {r.Exits} COM1 exits, expected {expected}");
                        sums[v.Name].Add(r.Exits, r.Elapsed, r.Cpu, ExitTiming.TakeAndReset());
                        sums[v.Name].PoolRuns += ExitTiming.TakePoolRuns();
                        if (v == ActorsVariant)
                        {
                            cell.FastReads += r.Fast;
                            cell.SlowReads += r.Slow;
                            cell.WaitedReads += r.Waited;
                        }
                    }
                    var rates = new Dictionary<string, double>();
                    foreach (var v in variants)
                    {
                        var sum = sums[v.Name];
                        rates[v.Name] = sum.Exits / sum.Elapsed.TotalSeconds;
                        var t = sum.Timing;
                        cell.Of(cell.Rate, v.Name).Add(rates[v.Name]);
                        cell.Of(cell.Outside, v.Name).Add(t.OutsideMicroseconds / t.Exits);
                        cell.Of(cell.Inside, v.Name).Add(t.InsideMicroseconds / t.Exits);
                        cell.Of(cell.CpuOutside, v.Name).Add(t.CpuOutsidePerExit(clockCost));
                        cell.Of(cell.Alloc, v.Name).Add((double)t.AllocatedBytes / t.Exits);
                        cell.Of(cell.Busy, v.Name).Add(t.DeviceTells > 0 ? (double)t.DeviceBusy / t.DeviceTells : 0);
                        cell.Of(cell.Cpu, v.Name).Add(sum.Cpu.TotalMicroseconds / sum.Exits);
                        cell.Of(cell.PoolRuns, v.Name).Add(sum.PoolRuns);
                    }
                    foreach (var v in variants.Where(v => v != InlineVariant))
                        cell.Of(cell.Ratio, v.Name).Add(rates[v.Name] / rates[InlineVariant.Name]);
                    if (native?.ExitsPerSecond(cell.Workload, cell.Vcpus, o.Iterations) is { } c) cell.Native.Add(c);
                }
            }
            Console.Error.Write("\r                    \r");
            if (o.Ablation)
            {
                ExitTiming.Enabled = false;
                layers = ExitPathLayers.Measure(ActorsVariant.System!);
            }
        }
        finally
        {
            ExitTiming.Enabled = false;
            foreach (var v in variants)
                if (v.System is { } system)
                {
                    await system.Terminate();
                    v.System = null;
                }
        }

        PrintTable(cells, native is { Binary: not null });
        if (o.Ablation) PrintAblation(cells, layers);
        PrintTargets(cells);
        Console.WriteLine($"load average after the exit-path runs: {LoadAverage()} ({Environment.ProcessorCount} CPUs)");

        var startupDir = Path.Combine(Path.GetTempPath(), $"kvmactors-startup-{Environment.ProcessId}");
        var startup = o.StartupRuns > 0 ? StartupBench.MeasureAll(StartupBench.Candidates(native, startupDir), o.StartupRuns) : [];
        if (o.StartupRuns > 0) StartupBench.Print(startup);
        if (Directory.Exists(startupDir)) Directory.Delete(startupDir, recursive: true);

        if (o.JsonPath is not null) WriteJson(o, cells, startup, native, layers);
        return ExitCodes.Ok;
    }

    private static string LoadAverage()
    {
        try { return string.Join(" ", File.ReadAllText("/proc/loadavg").Split(' ').Take(3)); }
        catch (IOException) { return "unknown"; }
    }

    /// <summary>Waits (at most 10 s) until the JIT has compiled nothing new for 0.5 s: tier-up of the warm-up's hot code is done.</summary>
    private static async Task JitSettled()
    {
        var last = System.Runtime.JitInfo.GetCompiledMethodCount();
        var deadline = Stopwatch.GetTimestamp() + 10 * Stopwatch.Frequency;
        for (var quiet = 0; quiet < 5 && Stopwatch.GetTimestamp() < deadline;)
        {
            await Task.Delay(100);
            var now = System.Runtime.JitInfo.GetCompiledMethodCount();
            quiet = now == last ? quiet + 1 : 0;
            last = now;
        }
    }

    private static void PrintTable(List<Cell> cells, bool withNative)
    {
        Console.WriteLine();
        Console.WriteLine($"{"",-14}  {"exits/s (median ± half range)",46}  {"",18}  {"µs per exit: handling",21}  {"in KVM_RUN",13}");
        Console.WriteLine($"{"workload",-8} {"vCPUs",5}  {"inline",22}  {"actors",22}  {"actors/inline",18}  {"inline",10} {"actors",10}  {"inline",6} {"actors",6}{(withNative ? "  C exitbench" : "")}  {"IN from snapshot",16}");
        foreach (var c in cells)
        {
            var ratios = c.Ratio[ActorsVariant.Name];
            var line = $"{c.Workload.Name(),-8} {c.Vcpus,5}  {Rate(c.Rate[InlineVariant.Name]),22}  {Rate(c.Rate[ActorsVariant.Name]),22}  " +
                       $"{Stats.Median(ratios),6:F3} [{ratios.Min():F3}-{ratios.Max():F3}]  " +
                       $"{Stats.Median(c.Outside[InlineVariant.Name]),10:F2} {Stats.Median(c.Outside[ActorsVariant.Name]),10:F2}  " +
                       $"{Stats.Median(c.Inside[InlineVariant.Name]),6:F2} {Stats.Median(c.Inside[ActorsVariant.Name]),6:F2}";
            if (withNative) line += c.Native.Count > 0 ? $"  {Stats.Median(c.Native),11:N0}" : $"  {"-",11}";
            var reads = c.FastReads + c.SlowReads;
            line += reads > 0 ? $"  {100.0 * c.FastReads / reads,15:F1}%" + (c.WaitedReads > 0 ? $" ({100.0 * c.WaitedReads / reads:F2}% after a wait)" : "") : $"  {"-",16}";
            Console.WriteLine(line);
        }
        Console.WriteLine("exits/s: median over rounds ± half the range; ratio: median of the per-round actors/inline ratios [min-max]");
        Console.WriteLine("µs per exit, handling: the vCPU thread's time outside KVM_RUN per exit (KVM_RUN return to next KVM_RUN: decoding,");
        Console.WriteLine("  devices, messages, mailbox) — the runtime's own cost; in KVM_RUN: the exit itself (world switch, emulation, guest code)");
        if (withNative)
            Console.WriteLine("C exitbench: exitbench.c, its own process, same N (its inout reads 0x3f8 and runs 4 guest instructions per 2 exits, ours 6)");
        Console.WriteLine("IN from snapshot: share of the actor variant's COM1 INs answered from the UART's read snapshot (the rest: round trips;");
        Console.WriteLine("  after a wait: writes of other vCPUs were still being handled, and were within kvmactors.devices.read-snapshot-wait)");

        Console.WriteLine();
        Console.WriteLine("per exit, inline / actors (medians over rounds):");
        Console.WriteLine($"{"workload",-8} {"vCPUs",5}  {"handling wall µs",17}  {"handling CPU µs",17}  {"in KVM_RUN µs",15}  {"process CPU µs",17}  {"alloc B/exit",14}  {"device busy",11}  {"pool runs",9}");
        foreach (var c in cells)
            Console.WriteLine($"{c.Workload.Name(),-8} {c.Vcpus,5}  {Pair(c.Outside, c, "F2"),17}  {Pair(c.CpuOutside, c, "F2"),17}  {Pair(c.Inside, c, "F1"),15}  " +
                              $"{Pair(c.Cpu, c, "F2"),17}  {Pair(c.Alloc, c, "F1"),14}  {100 * Stats.Median(c.Busy[ActorsVariant.Name]),10:F2}%  {Stats.Median(c.PoolRuns[ActorsVariant.Name]),9:F0}");
        Console.WriteLine($"handling CPU: the vCPU thread's own CPU time (CLOCK_THREAD_CPUTIME_ID) outside KVM_RUN, on one exit in {ExitTiming.CpuSampleEvery}:");
        Console.WriteLine("  unlike wall time it does not count the time the thread was preempted (nor blocked waiting for a device's answer);");
        Console.WriteLine("  it includes about 0.1-0.2 µs of the clock read's own disturbance in both variants; process CPU: all threads, user + system");
        Console.WriteLine("alloc: bytes the vCPU threads allocated per exit (GC.GetAllocatedBytesForCurrentThread; devices run inline are on them)");
        Console.WriteLine("device busy: share of the actors' Tells from a vCPU thread that found the device's mailbox already running or queued;");
        Console.WriteLine("  pool runs: device mailboxes handed to the thread pool (a wake-up) per round, the VMs' set-up and stop included");
        Console.WriteLine("  (messages from the VM actor's thread: about 8 per run without any exit); more than that are exits' device work");
    }

    private static string Pair(Dictionary<string, List<double>> d, Cell c, string format) =>
        $"{Stats.Median(d[InlineVariant.Name]).ToString(format, CultureInfo.InvariantCulture)} / {Stats.Median(d[ActorsVariant.Name]).ToString(format, CultureInfo.InvariantCulture)}";

    /// <summary>Issue 16's exit-path targets, each figure next to its reference (the inline loop) from this run.</summary>
    private static void PrintTargets(List<Cell> cells)
    {
        Console.WriteLine();
        Console.WriteLine("targets (against the inline loop in this run; ratio = median of per-round ratios):");
        foreach (var c in cells)
        {
            var target = c.Workload == Workload.Out ? 0.95 : 0.90;
            var ratio = Stats.Median(c.Ratio[ActorsVariant.Name]);
            Console.WriteLine($"  {c.Workload.Name(),-6} x{c.Vcpus}: actors/inline {ratio:F3} over {c.Ratio[ActorsVariant.Name].Count} rounds; " +
                              $"target >= {target:F2}: {(ratio >= target ? "met" : "not met")}");
        }
        foreach (var c in cells.Where(c => c.Workload == Workload.InOut && c.Vcpus == 4))
        {
            var (inline, actors) = (Stats.Median(c.Outside[InlineVariant.Name]), Stats.Median(c.Outside[ActorsVariant.Name]));
            Console.WriteLine($"  inout  x4: handling outside KVM_RUN {actors:F2} µs/exit vs inline {inline:F2}: x{actors / inline:F2}; " +
                              $"target <= x2: {(actors <= 2 * inline ? "met" : "not met")} (wall time)");
            var (cpuInline, cpuActors) = (Stats.Median(c.CpuOutside[InlineVariant.Name]), Stats.Median(c.CpuOutside[ActorsVariant.Name]));
            // The inline loop's sampled CPU figure sits near the clock's own noise (~0.1 µs): the difference says more than a ratio.
            Console.WriteLine($"  inout  x4: in thread CPU time (preemption not counted) {cpuActors:F2} µs/exit vs inline {cpuInline:F2}: " +
                              $"+{cpuActors - cpuInline:F2} µs; {(cpuActors <= 2 * cpuInline ? "within" : "over")} x2");
        }
    }

    private static void PrintAblation(List<Cell> cells, IReadOnlyList<(string Layer, double Nanoseconds)> layers)
    {
        var names = Ablations.Select(a => a.Name).Prepend(ActorsVariant.Name).ToList();
        Console.WriteLine();
        Console.WriteLine("ablation: exits/s (median), ratio to inline (median of per-round ratios), µs of handling per exit wall/CPU; one part of the design off");
        Console.WriteLine($"{"workload",-8} {"vCPUs",5}" + string.Concat(names.Select(n => $"  {n,31}")));
        foreach (var c in cells)
            Console.WriteLine($"{c.Workload.Name(),-8} {c.Vcpus,5}" +
                              string.Concat(names.Select(n => $"  {Stats.Median(c.Rate[n]),8:N0} ({Stats.Median(c.Ratio[n]),5:F3}) {Stats.Median(c.Outside[n]),5:F2}/{Stats.Median(c.CpuOutside[n]),4:F2}")));
        foreach (var a in Ablations) Console.WriteLine($"  {a.Name}: {a.Description}");
        Console.WriteLine($"in KVM_RUN, µs per exit (median): {string.Join("  ", names.Prepend(InlineVariant.Name).Select(n => n))}");
        foreach (var c in cells)
            Console.WriteLine($"{c.Workload.Name(),-8} {c.Vcpus,5}" + string.Concat(names.Prepend(InlineVariant.Name).Select(n => $"  {Stats.Median(c.Inside[n]),6:F2}")));
        Console.WriteLine();
        Console.WriteLine("ablation without KVM: ns per access of each layer of the actors' path, one thread running devices inline, caches hot");
        foreach (var (layer, ns) in layers) Console.WriteLine($"  {layer,-52} {ns,7:F1} ns");
    }

    private static string Rate(List<double> values) => $"{Stats.Median(values),10:N0} ±{Stats.Spread(values) * 100,4:F1}%";

    private static void WriteJson(BenchOptions o, List<Cell> cells, List<(StartupBench.Candidate Candidate, StartupBench.Summary? Summary)> startup, NativeReference? native,
        IReadOnlyList<(string Layer, double Nanoseconds)> layers)
    {
        var doc = new Dictionary<string, object?>
        {
            ["results"] = cells.Select(c => new Dictionary<string, object?>
            {
                ["workload"] = c.Workload.Name(),
                ["vcpus"] = c.Vcpus,
                ["inline"] = Math.Round(Stats.Median(c.Rate[InlineVariant.Name])),
                ["actors"] = Math.Round(Stats.Median(c.Rate[ActorsVariant.Name])),
                ["ratio"] = Math.Round(Stats.Median(c.Ratio[ActorsVariant.Name]), 4),
                ["inline_rounds"] = c.Rate[InlineVariant.Name].Select(v => Math.Round(v)).ToList(),
                ["actors_rounds"] = c.Rate[ActorsVariant.Name].Select(v => Math.Round(v)).ToList(),
                ["ratio_rounds"] = c.Ratio[ActorsVariant.Name].Select(r => Math.Round(r, 4)).ToList(),
                ["inline_cpu_us_per_exit"] = Math.Round(Stats.Median(c.Cpu[InlineVariant.Name]), 3),
                ["actors_cpu_us_per_exit"] = Math.Round(Stats.Median(c.Cpu[ActorsVariant.Name]), 3),
                ["inline_handling_us_per_exit"] = Math.Round(Stats.Median(c.Outside[InlineVariant.Name]), 3),
                ["actors_handling_us_per_exit"] = Math.Round(Stats.Median(c.Outside[ActorsVariant.Name]), 3),
                ["inline_kvm_run_us_per_exit"] = Math.Round(Stats.Median(c.Inside[InlineVariant.Name]), 3),
                ["actors_kvm_run_us_per_exit"] = Math.Round(Stats.Median(c.Inside[ActorsVariant.Name]), 3),
                ["inline_handling_cpu_us_per_exit"] = Math.Round(Stats.Median(c.CpuOutside[InlineVariant.Name]), 3),
                ["actors_handling_cpu_us_per_exit"] = Math.Round(Stats.Median(c.CpuOutside[ActorsVariant.Name]), 3),
                ["inline_alloc_bytes_per_exit"] = Math.Round(Stats.Median(c.Alloc[InlineVariant.Name]), 1),
                ["actors_alloc_bytes_per_exit"] = Math.Round(Stats.Median(c.Alloc[ActorsVariant.Name]), 1),
                ["actors_device_busy"] = Math.Round(Stats.Median(c.Busy[ActorsVariant.Name]), 5),
                ["actors_pool_runs"] = Stats.Median(c.PoolRuns[ActorsVariant.Name]),
                ["actors_in_from_snapshot"] = c.FastReads + c.SlowReads > 0 ? Math.Round((double)c.FastReads / (c.FastReads + c.SlowReads), 4) : null,
                ["c_exitbench"] = c.Native.Count > 0 ? Math.Round(Stats.Median(c.Native)) : null,
                ["ablation"] = o.Ablation
                    ? Ablations.ToDictionary(a => a.Name, a => (object)new Dictionary<string, object>
                    {
                        ["exits_per_s"] = Math.Round(Stats.Median(c.Rate[a.Name])),
                        ["ratio"] = Math.Round(Stats.Median(c.Ratio[a.Name]), 4),
                        ["handling_us_per_exit"] = Math.Round(Stats.Median(c.Outside[a.Name]), 3),
                        ["handling_cpu_us_per_exit"] = Math.Round(Stats.Median(c.CpuOutside[a.Name]), 3),
                    })
                    : null,
            }).ToList(),
            ["startup"] = startup.Select(r => new Dictionary<string, object?>
            {
                ["what"] = r.Candidate.What, ["command"] = r.Candidate.Command, ["runs"] = r.Summary?.Runs ?? 0,
                ["first_exit_ms"] = r.Summary is { } s ? Math.Round(s.FirstExitMedianMs, 2) : null,
                ["whole_run_ms"] = r.Summary is { } w ? Math.Round(w.WholeRunMedianMs, 2) : null,
                ["skipped"] = r.Candidate.Skipped,
            }).ToList(),
            ["native_skipped"] = native is null ? "--no-native" : native.Skipped,
            ["layers_ns"] = layers.ToDictionary(l => l.Layer, l => Math.Round(l.Nanoseconds, 1)),
            ["repeats"] = o.Repeats,
            ["iterations"] = o.Iterations,
            ["rounds"] = o.Rounds,
            ["host_cpus"] = Environment.ProcessorCount,
            ["timed"] = "first vCPU's start marker to last vCPU's end marker; exits/s = COM1 exits of all vCPUs / interval",
        };
        File.WriteAllText(o.JsonPath!, JsonSerializer.Serialize(doc, new JsonSerializerOptions { WriteIndented = true }) + "\n");
    }
}

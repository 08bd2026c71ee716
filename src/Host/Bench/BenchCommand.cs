using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Akka.Actor;
using Akka.Configuration;
using KvmActors.Runtime.Config;
using KvmActors.Runtime.Vm;

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
    bool Quick)
{
    public const string Usage = """
        usage: kvmactors bench [--quick] [--n N] [--rounds R] [--vcpus 1,2,4] [--workloads out,inout]
                               [--startup-runs K] [--no-native] [--exitbench PATH] [--json FILE]

          --quick           N=5000, 3 rounds, 3 start-up runs (about a minute less than the default)
          --n N             guest loop iterations per vCPU (default 20000; out = N exits, inout = 2N exits)
          --rounds R        rounds; each round runs every workload and vCPU count once per variant,
                            alternating which variant goes first (default 5)
          --vcpus LIST      vCPU counts (default 1,2,4)
          --workloads LIST  out, inout (default both)
          --startup-runs K  child processes per start-up figure, 0 to skip (default 5)
          --no-native       skip the C exitbench reference (compiled with gcc at bench time)
          --exitbench PATH  exitbench.c (default: shared/reference/exitbench.c found above this directory)
          --json FILE       also write the results as JSON
        """;

    public static BenchOptions Parse(IReadOnlyList<string> args)
    {
        long? n = null;
        int? rounds = null, startup = null;
        var quick = false;
        var native = true;
        string? json = null, source = null;
        IReadOnlyList<int> vcpus = [1, 2, 4];
        IReadOnlyList<Workload> workloads = [Workload.Out, Workload.InOut];
        for (var i = 0; i < args.Count; i++)
        {
            var a = args[i];
            string Next() => i + 1 < args.Count ? args[++i] : throw new UsageException($"{a} needs a value");
            long Positive(string text, long max) =>
                long.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) && v >= 1 && v <= max
                    ? v : throw new UsageException($"{a}: '{text}' is not a number in 1..{max}");
            switch (a)
            {
                case "--quick": quick = true; break;
                case "--n": n = Positive(Next(), 1L << 31); break;
                case "--rounds": rounds = (int)Positive(Next(), 1000); break;
                case "--startup-runs":
                    var s = Next();
                    startup = s == "0" ? 0 : (int)Positive(s, 1000);
                    break;
                case "--vcpus":
                    vcpus = Next().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                        .Select(v => (int)Positive(v, 64)).Distinct().ToList();
                    break;
                case "--workloads":
                    workloads = Next().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                        .Select(w => w switch
                        {
                            "out" => Workload.Out,
                            "inout" => Workload.InOut,
                            _ => throw new UsageException($"--workloads: '{w}' is not out or inout"),
                        }).Distinct().ToList();
                    break;
                case "--no-native": native = false; break;
                case "--exitbench": source = Next(); break;
                case "--json": json = Next(); break;
                default: throw new UsageException($"bench: unknown option '{a}'");
            }
        }
        if (vcpus.Count == 0 || workloads.Count == 0) throw new UsageException("bench: nothing to run");
        return new BenchOptions(n ?? (quick ? 5000 : 20000), rounds ?? (quick ? 3 : 5), vcpus, workloads, json,
            startup ?? (quick ? 3 : 5), native, source, quick);
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
    private sealed record Cell(Workload Workload, int Vcpus)
    {
        public readonly List<double> Inline = new(), Actors = new(), Ratios = new(), Native = new();
        public readonly List<double> InlineCpu = new(), ActorsCpu = new(); // CPU µs of the process per exit
        public long FastReads, SlowReads; // COM1 INs answered from the read snapshot / by a round trip (actors)
    }

    public static async Task<int> RunAsync(BenchOptions o)
    {
        var kvm = KvmActorsConfig.Reference.GetString("kvmactors.kvm-device");
        if (KvmActors.Runtime.Kvm.KvmSystem.Unavailable(kvm) is { } why)
        {
            Console.Error.WriteLine($"kvmactors bench: {kvm} unavailable: {why}");
            return ExitCodes.GuestFailure;
        }

        using var native = o.Native ? NativeReference.Prepare(o.ExitbenchSource) : null;
        var cells = (from w in o.Workloads from v in o.VcpuCounts select new Cell(w, v)).ToList();

        Console.WriteLine($"kvmactors bench: N={o.Iterations} iterations per vCPU, {o.Rounds} rounds, {Environment.ProcessorCount} host CPUs");
        Console.WriteLine("timed: first vCPU's start marker to last vCPU's end marker (VM creation, thread/actor start, teardown excluded)");
        if (native?.Skipped is { } skipped) Console.WriteLine($"C exitbench reference skipped: {skipped}");

        var system = ActorSystem.Create("kvmactors-bench", KvmActorsConfig.WithDefaults(ConfigurationFactory.ParseString("""
            akka.loglevel = WARNING
            akka.stdout-loglevel = WARNING
            akka.log-dead-letters = off
            akka.log-dead-letters-during-shutdown = off
            """)));
        try
        {
            var settings = VmSettings.From(system.Settings.Config);
            // Warm-up, not counted: every cell once per variant, so the code measured is the JIT's optimised
            // tier and not its first tier (tiered compilation recompiles hot methods in the background after
            // ~30 calls and a 100 ms delay), then a pause for that background compilation to finish.
            Console.Error.Write("warm-up...");
            foreach (var cell in cells)
            {
                var warm = BenchGuests.Spec(cell.Workload, cell.Vcpus, o.Iterations, "warm");
                InlineRunner.Run(warm, settings.KvmDevice);
                await ActorRunner.RunAsync(system, settings, warm, "warm", TimeSpan.FromSeconds(60));
            }
            await JitSettled();

            var timeout = TimeSpan.FromSeconds(Math.Max(60, o.Iterations / 1000.0));
            for (var round = 0; round < o.Rounds; round++)
            {
                Console.Error.Write($"\rround {round + 1}/{o.Rounds}...");
                foreach (var cell in cells)
                {
                    var expected = o.Iterations * cell.Workload.ExitsPerIteration() * cell.Vcpus;
                    double inline = 0, actors = 0, inlineCpu = 0, actorsCpu = 0;
                    // Alternate which variant goes first, per round and per cell.
                    var actorsFirst = (round + cells.IndexOf(cell)) % 2 == 1;
                    for (var k = 0; k < 2; k++)
                    {
                        var runId = $"r{round}-{cell.Workload.Name()}-{cell.Vcpus}-{k}";
                        var spec = BenchGuests.Spec(cell.Workload, cell.Vcpus, o.Iterations, runId);
                        if ((k == 0) == actorsFirst)
                        {
                            var r = await ActorRunner.RunAsync(system, settings, spec, runId, timeout);
                            Check("actors", cell, r.ComExits, expected);
                            actors = r.ComExits / r.Elapsed.TotalSeconds;
                            actorsCpu = r.Cpu.TotalMicroseconds / r.ComExits;
                            cell.FastReads += r.FastReads;
                            cell.SlowReads += r.SlowReads;
                        }
                        else
                        {
                            var r = InlineRunner.Run(spec, settings.KvmDevice);
                            Check("inline", cell, r.ComExits, expected);
                            inline = r.ComExits / r.Elapsed.TotalSeconds;
                            inlineCpu = r.Cpu.TotalMicroseconds / r.ComExits;
                        }
                    }
                    cell.Inline.Add(inline);
                    cell.Actors.Add(actors);
                    cell.Ratios.Add(actors / inline);
                    cell.InlineCpu.Add(inlineCpu);
                    cell.ActorsCpu.Add(actorsCpu);
                    if (native?.ExitsPerSecond(cell.Workload, cell.Vcpus, o.Iterations) is { } c) cell.Native.Add(c);
                }
            }
            Console.Error.Write("\r                    \r");
        }
        finally
        {
            await system.Terminate();
        }

        PrintTable(cells, native is { Binary: not null });

        var startup = o.StartupRuns > 0 ? MeasureStartup(o.StartupRuns, native) : [];
        if (o.StartupRuns > 0) PrintStartup(startup, native);

        if (o.JsonPath is not null) WriteJson(o, cells, startup, native);
        return ExitCodes.Ok;
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

    private static void Check(string variant, Cell cell, long got, long expected)
    {
        if (got != expected)
            throw new InvalidOperationException($"{variant} {cell.Workload.Name()} x{cell.Vcpus}: {got} COM1 exits, expected {expected}");
    }

    private static void PrintTable(List<Cell> cells, bool withNative)
    {
        Console.WriteLine();
        Console.WriteLine($"{"workload",-8} {"vCPUs",5}  {"inline exits/s",22}  {"actors exits/s",22}  {"actors/inline",18}  {"CPU µs/exit inline actors",25}{(withNative ? "  C exitbench" : "")}  {"IN from snapshot",16}");
        foreach (var c in cells)
        {
            var ratio = Stats.Median(c.Ratios);
            var line = $"{c.Workload.Name(),-8} {c.Vcpus,5}  {Rate(c.Inline),22}  {Rate(c.Actors),22}  " +
                       $"{ratio,6:F3} [{c.Ratios.Min():F3}-{c.Ratios.Max():F3}]  {Stats.Median(c.InlineCpu),18:F2} {Stats.Median(c.ActorsCpu),6:F2}";
            if (withNative) line += c.Native.Count > 0 ? $"  {Stats.Median(c.Native),11:N0}" : $"  {"-",11}";
            var reads = c.FastReads + c.SlowReads;
            line += reads > 0 ? $"  {100.0 * c.FastReads / reads,15:F1}%" : $"  {"-",16}";
            Console.WriteLine(line);
        }
        Console.WriteLine("exits/s: median over rounds ± half the range; ratio: median of the per-round actors/inline ratios [min-max]");
        Console.WriteLine("IN from snapshot: share of the actor variant's COM1 INs answered from the UART's read snapshot (the rest: round trips)");
        Console.WriteLine("CPU µs/exit: CPU time of the whole process (all threads, user+system, getrusage) over the timed interval / exits; median");
    }

    private static string Rate(List<double> values) => $"{Stats.Median(values),10:N0} ±{Stats.Spread(values) * 100,4:F1}%";

    private static List<StartupBench.Summary> MeasureStartup(int runs, NativeReference? native)
    {
        var (file, args) = StartupBench.Self("run");
        var self = new List<StartupBench.Sample>();
        var c = new List<StartupBench.Sample>();
        var probe = native?.ProbeBinary;
        string[] probeArgs = ["1", "1", "out"];
        // One unmeasured run of each first (page cache), then alternate.
        StartupBench.Measure(file, args);
        if (probe is not null) StartupBench.Measure(probe, probeArgs);
        for (var i = 0; i < runs; i++)
        {
            Console.Error.Write($"\rstart-up {i + 1}/{runs}...");
            if (StartupBench.Measure(file, args) is { } s) self.Add(s);
            if (probe is not null && StartupBench.Measure(probe, probeArgs) is { } n) c.Add(n);
        }
        Console.Error.Write("\r                    \r");
        var result = new List<StartupBench.Summary>();
        if (StartupBench.Summarize("kvmactors run (seed guest)", string.Join(" ", [file, .. args]), self) is { } a) result.Add(a);
        if (probe is not null && StartupBench.Summarize("exitbench.c (1 vCPU, 1 OUT)", string.Join(" ", [probe, .. probeArgs]), c) is { } b) result.Add(b);
        return result;
    }

    private static void PrintStartup(List<StartupBench.Summary> startup, NativeReference? native)
    {
        Console.WriteLine();
        Console.WriteLine("start-up (child processes; from just before the parent starts the process):");
        Console.WriteLine($"  {"",-28} {"to first exit",16} {"whole run",16}");
        foreach (var s in startup)
            Console.WriteLine($"  {s.What,-28} {s.FirstExitMedianMs,10:F1} ms    {s.WholeRunMedianMs,10:F1} ms   (median of {s.Runs}; min {s.FirstExitMinMs:F1} / {s.WholeRunMinMs:F1} ms)");
        if (native is null) Console.WriteLine("  exitbench.c: skipped (--no-native)");
        else if (native.ProbeBinary is null) Console.WriteLine($"  exitbench.c: skipped ({native.Skipped ?? "probe could not be built"})");
        Console.WriteLine("  first exit = first byte on the child's stdout: the seed's first OUT as printed by the UART actor;");
        Console.WriteLine("  for exitbench, a byte written right after vCPU 0's first KVM_RUN returns (a one-line probe added to a temp copy)");
    }

    private static void WriteJson(BenchOptions o, List<Cell> cells, List<StartupBench.Summary> startup, NativeReference? native)
    {
        var doc = new Dictionary<string, object?>
        {
            ["results"] = cells.Select(c => new Dictionary<string, object?>
            {
                ["workload"] = c.Workload.Name(),
                ["vcpus"] = c.Vcpus,
                ["inline"] = Math.Round(Stats.Median(c.Inline)),
                ["actors"] = Math.Round(Stats.Median(c.Actors)),
                ["ratio"] = Math.Round(Stats.Median(c.Ratios), 4),
                ["inline_rounds"] = c.Inline.Select(v => Math.Round(v)).ToList(),
                ["actors_rounds"] = c.Actors.Select(v => Math.Round(v)).ToList(),
                ["ratio_rounds"] = c.Ratios.Select(r => Math.Round(r, 4)).ToList(),
                ["inline_cpu_us_per_exit"] = Math.Round(Stats.Median(c.InlineCpu), 3),
                ["actors_cpu_us_per_exit"] = Math.Round(Stats.Median(c.ActorsCpu), 3),
                ["actors_in_from_snapshot"] = c.FastReads + c.SlowReads > 0 ? Math.Round((double)c.FastReads / (c.FastReads + c.SlowReads), 4) : null,
                ["c_exitbench"] = c.Native.Count > 0 ? Math.Round(Stats.Median(c.Native)) : null,
            }).ToList(),
            ["startup"] = startup.Select(s => new Dictionary<string, object?>
            {
                ["what"] = s.What, ["command"] = s.Command, ["runs"] = s.Runs,
                ["first_exit_ms"] = Math.Round(s.FirstExitMedianMs, 2), ["whole_run_ms"] = Math.Round(s.WholeRunMedianMs, 2),
            }).ToList(),
            ["native_skipped"] = native is null ? "--no-native" : native.Skipped,
            ["iterations"] = o.Iterations,
            ["rounds"] = o.Rounds,
            ["host_cpus"] = Environment.ProcessorCount,
            ["timed"] = "first vCPU's start marker to last vCPU's end marker; exits/s = COM1 exits of all vCPUs / interval",
        };
        File.WriteAllText(o.JsonPath!, JsonSerializer.Serialize(doc, new JsonSerializerOptions { WriteIndented = true }) + "\n");
    }
}

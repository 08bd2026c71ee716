using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Akka.Actor;
using Akka.Configuration;
using KvmActors.Host.Serve;
using KvmActors.Runtime.Config;
using KvmActors.Runtime.Vm;

namespace KvmActors.Host.Bench;

/// <summary>
/// <c>kvmactors bench density --vms 1,10,100,200 [--json FILE]</c>: how many VMs one host process holds.
/// Runs the serve host's VM core (<see cref="VmHost"/>, the same code the HTTP API calls) in this process, warm,
/// with N seed-like guests that print one byte and then HLT with <c>irqchip = true</c> (so each vCPU sleeps in
/// the kernel), and reports per N: host RSS per VM beyond guest RAM, threads and fds per VM, create → first
/// guest exit latency (the guest's first OUT reaching its console ring: median, p99), and the time to stop all.
/// Where <c>qemu-system-x86_64</c> is installed the same tiny guest runs as N QEMU processes for comparison.
/// </summary>
public static class DensityBench
{
    // mov dx, 0x3f8 ; mov al, '.' ; out dx, al ; hlt ; jmp $-1   (with irqchip the HLT sleeps in KVM)
    private const string GuestCode = "ba f8 03 b0 2e ee f4 eb fd";
    private const ulong GuestRam = 64 * 1024;

    private static string Guest => $$"""
        guest {
          name = density
          irqchip = true
          memory = [
            { name = ram, address = 0x0, size = 64K }
          ]
          image {
            inline = "{{GuestCode}}"
            load-address = 0x1000
          }
          cpu.registers.rip = 0x1000
        }
        """;

    public static async Task<int> RunAsync(string[] args)
    {
        var vmsOption = new Option<string>("--vms") { Description = "VM counts, comma-separated", DefaultValueFactory = _ => "1,10,100,200" };
        var json = new Option<string?>("--json") { Description = "also write the figures as JSON to FILE" };
        var noQemu = new Option<bool>("--no-qemu") { Description = "skip the QEMU comparison even where qemu-system-x86_64 is installed" };
        var cyclesOption = new Option<int>("--cycles") { Description = "after each N: K rounds of create N / stop N, then N live: RSS and managed heap per live VM after recycling", DefaultValueFactory = _ => 0 };
        var command = new Command("density", "VMs per host process: memory, managed heap, GC pause, threads, fds per VM, create latency, stop-all time")
            { vmsOption, json, noQemu, cyclesOption, new System.CommandLine.Help.HelpOption() };
        var parsed = command.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            foreach (var e in parsed.Errors) Console.Error.WriteLine($"kvmactors bench density: {e.Message}");
            return ExitCodes.Usage;
        }
        if (parsed.Action is System.CommandLine.Help.HelpAction) { await parsed.InvokeAsync(); return ExitCodes.Ok; }
        var counts = new List<int>();
        foreach (var part in parsed.GetValue(vmsOption)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (!int.TryParse(part, out var n) || n < 1)
            {
                Console.Error.WriteLine($"kvmactors bench density: --vms: '{part}' is not a positive count");
                return ExitCodes.Usage;
            }
            counts.Add(n);
        }
        var qemu = parsed.GetValue(noQemu) ? null : FindOnPath("qemu-system-x86_64");
        var cycles = parsed.GetValue(cyclesOption);
        if (cycles < 0)
        {
            Console.Error.WriteLine($"kvmactors bench density: --cycles: {cycles} is not a count");
            return ExitCodes.Usage;
        }

        var system = ActorSystem.Create("kvmactors-density", KvmActorsConfig.WithDefaults(ConfigurationFactory.ParseString("""
            akka {
              loglevel = WARNING
              stdout-loglevel = OFF
              log-dead-letters = off
              log-dead-letters-during-shutdown = off
            }
            """)));
        var results = new JsonArray();
        using var floor = KvmFloor.Prepare();
        try
        {
            var settings = HostSettings.Default with { MaxVms = int.MaxValue, MaxVcpusTotal = int.MaxValue, MaxMemoryTotal = ulong.MaxValue, MaxEndedKept = 0 };
            var host = new VmHost(system, settings, Environment.CurrentDirectory, null);
            await Round(host, 10); // warm-up: JIT, dispatcher, the device registry
            var idlePause = GcPause();
            var (warmRss, _, _) = ProcessFigures.Read();
            if (Environment.GetEnvironmentVariable("KVMACTORS_DENSITY_SMAPS") is { Length: > 0 } dump) File.WriteAllText($"{dump}.warm", File.ReadAllText("/proc/self/smaps"));
            Console.WriteLine($"GC: {(System.Runtime.GCSettings.IsServerGC ? "server" : "workstation")}, {(GcConcurrent() ? "concurrent" : "non-concurrent")}, " +
                              $"latency mode {System.Runtime.GCSettings.LatencyMode}; full-GC pause with no VM {idlePause.Wall:0.0} ms (GC's own {idlePause.Reported:0.0} ms); warm host RSS {warmRss / (double)(1 << 20):0.0} MiB");
            Console.WriteLine($"{"VMs",5} {"RSS/VM MiB",11} {"heap/VM KiB",12} {"GC pause ms",12} {"threads/VM",11} {"fds/VM",7} {"create p50 ms",14} {"create p99 ms",14} {"stop-all ms",12} {"config p50 ms",14}");
            foreach (var n in counts)
            {
                var r = await Round(host, n, floor);
                Console.WriteLine($"{n,5} {r.RssPerVmMib,11:0.000} {r.HeapPerVmKib,12:0.0} {r.GcPauseMs,12:0.0} {r.ThreadsPerVm,11:0.00} {r.FdsPerVm,7:0.00} {r.CreateP50,14:0.00} {r.CreateP99,14:0.00} {r.StopAllMs,12:0.0} {r.ConfigP50,14:0.00}");
                Console.WriteLine($"{n,5} create stages, p50 ms from the previous one: " + string.Join(", ", r.Stages.Select(kv => $"{kv.Key} {kv.Value}")));
                var o = r.ToJson(n);
                o["gc_pause_ms_no_vm"] = Math.Round(idlePause.Wall, 2);
                if (cycles > 0)
                {
                    var c = await Cycles(host, n, cycles, warmRss);
                    Console.WriteLine($"{n,5} after {cycles} create/stop cycles, {n} live: RSS/VM {c.RssPerLiveVmMib:0.000} MiB beyond RAM (from the warm host's {warmRss / (double)(1 << 20):0.0} MiB), " +
                                      $"heap/VM {c.HeapPerVmKib:0.0} KiB, GC pause {c.GcPauseMs:0.0} ms, host RSS {c.RssMib:0.0} MiB, GC heap {c.GcHeapMib:0.0} MiB (committed {c.GcCommittedMib:0.0} MiB, fragmented {c.GcFragmentedMib:0.0} MiB)");
                    o["cycles"] = c.ToJson(cycles);
                }
                if (qemu is not null) o["qemu"] = await Qemu(qemu, n);
                // KVM's floor right after (the same load): the runtime's order (memory slots before the irqchip) and the other.
                foreach (var (key, memoryFirst) in new[] { ("kvm_floor", true), ("kvm_floor_irqchip_first", false) })
                    if (floor.Measure(Math.Clamp(n, 10, 30), memoryFirst) is { } f)
                        o[key] = new JsonObject { ["create_ms_p50"] = Math.Round(f.CreateP50, 3), ["teardown_ms_p50"] = Math.Round(f.TeardownP50, 3) };
                results.Add(o);
            }
        }
        finally
        {
            await system.Terminate();
        }
        if (qemu is null) Console.WriteLine("qemu: skipped (qemu-system-x86_64 is not installed)");
        else
            foreach (var r in results)
                Console.WriteLine($"qemu {r!["vms"],5}: {r["qemu"]!.ToJsonString()}");
        Console.WriteLine($"rss_per_vm_mib is the host's RSS growth per VM minus the guest's RAM ({GuestRam / 1024} KiB); the vCPU thread's stack is in it.");
        PrintTargets(results, floor.Skipped, qemu is not null);
        if (parsed.GetValue(json) is { } path)
            await File.WriteAllTextAsync(path, new JsonObject { ["density"] = results }.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        return ExitCodes.Ok;
    }

    // Issue 16's target 2.
    private const double HeapTargetKib = 64, GcPauseTargetMs = 20, RssAfterCyclesTargetMib = 0.5;

    /// <summary>Issue 16's targets, each figure next to its reference from this run.</summary>
    private static void PrintTargets(JsonArray results, string? floorSkipped, bool qemu)
    {
        Console.WriteLine();
        Console.WriteLine("targets (each against its reference measured in this run):");
        foreach (var r in results)
        {
            var n = (int)r!["vms"]!;
            var create = (double)r["create_ms_p50"]!;
            // The config part as this run's creates paid it (parse, checks, binding, admission: the "admitted" stage).
            var config = (double?)r["create_stages_ms_p50"]?["admitted"] ?? (double)r["config_ms_p50"]!;
            if (r["kvm_floor"] is { } f)
            {
                var fl = (double)f["create_ms_p50"]!;
                var other = (double?)r["kvm_floor_irqchip_first"]?["create_ms_p50"];
                Console.WriteLine($"  {n,4} VMs  create -> first exit p50 {create:0.00} ms ({create - config:0.00} ms without the config part) " +
                                  $"vs KVM floor {fl:0.00} ms (kvm-floor.c, same order; irqchip first: {other:0.00} ms): " +
                                  $"x{create / fl:0.00} (x{(create - config) / fl:0.00} without config); target <= x1.2");
                if (r["kvm_floor_interleaved"] is { } fi)
                {
                    var fil = (double)fi["create_ms_p50"]!;
                    Console.WriteLine($"  {n,4} VMs  create -> first exit p50 {create:0.00} ms vs KVM floor measured between the creates {fil:0.00} ms " +
                                      $"({fi["runs"]} runs, same order): x{create / fil:0.00} (x{(create - config) / fil:0.00} without config); target <= x1.2");
                }
            }
            else Console.WriteLine($"  {n,4} VMs  create -> first exit p50 {create:0.00} ms; KVM floor skipped: {floorSkipped}");
            var stop = (double)r["stop_all_ms"]!;
            if (r["qemu"] is { } q)
            {
                var qs = (double)q["stop_all_ms"]!;
                Console.WriteLine($"  {n,4} VMs  stop all {stop:0.0} ms vs QEMU's {n} processes {qs:0.0} ms: x{stop / qs:0.00}; target <= x1.0");
            }
            else Console.WriteLine($"  {n,4} VMs  stop all {stop:0.0} ms; QEMU {(qemu ? "failed" : "skipped (not installed)")}");
            Console.WriteLine($"  {n,4} VMs  managed heap per live VM {r["heap_per_vm_kib"]} KiB (of it the guest's console ring {r["console_ring_kib"]} KiB, device state {r["device_state_kib"]} KiB); " +
                              $"target <= {HeapTargetKib} KiB beyond the devices' state");
            Console.WriteLine($"  {n,4} VMs  full-GC pause with {n} live VMs {r["gc_pause_ms"]} ms, median of 5 (GC's own pause {r["gc_pause_reported_ms"]} ms, least {r["gc_pause_min_ms"]} ms; no VM: {r["gc_pause_ms_no_vm"]} ms); target <= {GcPauseTargetMs} ms");
            if (r["cycles"] is { } c)
                Console.WriteLine($"  {n,4} VMs  RSS per live VM after {c["cycles"]} create/stop cycles {c["rss_per_live_vm_mib"]} MiB beyond RAM " +
                                  $"({c["rss_total_per_live_vm_mib"]} MiB with it); target <= {RssAfterCyclesTargetMib} MiB");
            else Console.WriteLine($"  {n,4} VMs  RSS per live VM after create/stop cycles: not measured (--cycles K)");
            Console.WriteLine($"  {n,4} VMs  vCPU threads still alive when their VM's end was recorded: {r["vcpu_threads_alive_at_vm_end"]}, " +
                              $"longest after it {r["vcpu_thread_lag_max_ms"]} ms; target <= 50 ms");
        }
    }

    private sealed record Figures(double RssPerVmMib, double RssTotalPerVmMib, double ThreadsPerVm, double FdsPerVm, double CreateP50, double CreateP99, double StopAllMs, double ConfigP50,
        int VcpuThreadsAliveAtEnd, double VcpuThreadLagMaxMs, double HeapPerVmKib, double ConsoleRingKib, double DeviceStateKib, double GcPauseMs, double GcPauseReportedMs, double GcPauseMinMs, JsonObject Stages, double? FloorInterleavedP50, int FloorInterleavedRuns)
    {
        public JsonObject ToJson(int n) => new()
        {
            ["vms"] = n,
            ["rss_per_vm_mib"] = Math.Round(RssPerVmMib, 3),
            ["rss_total_per_vm_mib"] = Math.Round(RssTotalPerVmMib, 3),
            ["heap_per_vm_kib"] = Math.Round(HeapPerVmKib, 1),
            ["heap_per_vm_target_kib"] = HeapTargetKib,
            ["console_ring_kib"] = Math.Round(ConsoleRingKib, 1),
            ["device_state_kib"] = Math.Round(DeviceStateKib, 2),
            ["gc_pause_ms"] = Math.Round(GcPauseMs, 2),
            ["gc_pause_reported_ms"] = Math.Round(GcPauseReportedMs, 2),
            ["gc_pause_min_ms"] = Math.Round(GcPauseMinMs, 2),
            ["gc_pause_target_ms"] = GcPauseTargetMs,
            ["create_stages_ms_p50"] = Stages,
            ["kvm_floor_interleaved"] = FloorInterleavedP50 is { } f
                ? new JsonObject { ["create_ms_p50"] = Math.Round(f, 3), ["runs"] = FloorInterleavedRuns }
                : null,
            ["threads_per_vm"] = Math.Round(ThreadsPerVm, 2),
            ["fds_per_vm"] = Math.Round(FdsPerVm, 2),
            ["create_ms_p50"] = Math.Round(CreateP50, 3),
            ["create_ms_p99"] = Math.Round(CreateP99, 3),
            ["stop_all_ms"] = Math.Round(StopAllMs, 1),
            ["config_ms_p50"] = Math.Round(ConfigP50, 3),
            ["vcpu_threads_alive_at_vm_end"] = VcpuThreadsAliveAtEnd,
            ["vcpu_thread_lag_max_ms"] = Math.Round(VcpuThreadLagMaxMs, 1),
        };
    }

    private sealed record CycleFigures(double RssPerLiveVmMib, double RssTotalPerLiveVmMib, double HeapPerVmKib, double GcPauseMs, double RssMib, double GcHeapMib,
        double GcCommittedMib, double GcFragmentedMib)
    {
        public JsonObject ToJson(int cycles) => new()
        {
            ["cycles"] = cycles,
            ["rss_per_live_vm_mib"] = Math.Round(RssPerLiveVmMib, 3),
            ["rss_total_per_live_vm_mib"] = Math.Round(RssTotalPerLiveVmMib, 3),
            ["rss_per_live_vm_target_mib"] = RssAfterCyclesTargetMib,
            ["heap_per_vm_kib"] = Math.Round(HeapPerVmKib, 1),
            ["gc_pause_ms"] = Math.Round(GcPauseMs, 2),
            ["host_rss_mib"] = Math.Round(RssMib, 1),
            ["gc_heap_mib"] = Math.Round(GcHeapMib, 1),
            ["gc_committed_mib"] = Math.Round(GcCommittedMib, 1),
            ["gc_fragmented_mib"] = Math.Round(GcFragmentedMib, 1),
        };
    }

    /// <summary>The managed heap after a full compacting GC (bytes live).</summary>
    private static long LiveHeap()
    {
        GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();
        GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
        return GC.GetTotalMemory(false);
    }

    /// <summary>A full blocking compacting GC, timed (median of 5): wall time around it and the GC's own pause; and the least wall time.</summary>
    private static (double Wall, double Reported, double Min) GcPause()
    {
        var wall = new List<double>();
        var reported = new List<double>();
        for (var i = 0; i < 5; i++)
        {
            var sw = Stopwatch.StartNew();
            GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
            wall.Add(sw.Elapsed.TotalMilliseconds);
            reported.Add(GC.GetGCMemoryInfo(GCKind.FullBlocking).PauseDurations.ToArray().Sum(d => d.TotalMilliseconds));
        }
        return (Stats.Median(wall), Stats.Median(reported), wall.Min());
    }

    private static bool GcConcurrent() =>
        AppContext.GetData("System.GC.Concurrent") is not bool b || b;

    /// <summary>What the density guest's only device (COM1, a 16550) needs on the heap: its register model, FIFOs included.</summary>
    private static double DeviceStateKib()
    {
        var before = GC.GetAllocatedBytesForCurrentThread();
        GC.KeepAlive(new KvmActors.Devices.Uart16550.Uart16550());
        return (GC.GetAllocatedBytesForCurrentThread() - before) / 1024.0;
    }

    /// <summary>Creates <paramref name="n"/> density VMs one after another, each waited for until its first exit (create → first exit in ms).</summary>
    /// <param name="floor">When given, KVM's floor is measured once (one kvm-floor.c VM) right before every
    /// <paramref name="floorEvery"/>-th create, so the reference sees the same load as the creates it is compared with.</param>
    private static async Task<(List<HostedVm> Vms, List<double> Latencies)> CreateAll(VmHost host, int n, List<long>? starts = null,
        KvmFloor? floor = null, List<double>? floorSamples = null, int floorEvery = 1)
    {
        var vms = new List<HostedVm>(n);
        var latencies = new List<double>(n);
        for (int i = 0; i < n; i++)
        {
            if (floor is not null && i % floorEvery == 0 && floor.Measure(1, memoryFirst: true) is { } f) floorSamples?.Add(f.CreateP50);
            var t0 = Stopwatch.GetTimestamp(); // before the config is parsed: the whole create, as a client's request costs it
            starts?.Add(t0);
            var vm = host.Create(new GuestRequest(Guest, $"density-{i}", []));
            vms.Add(vm);
            // Bounded wait for the guest's first exit (its OUT in the console ring), woken by the ring: polling here
            // (it once spun on Task.Yield for 5 ms) takes one of this machine's two cores from the VM being created.
            using (var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30)))
            {
                try { await vm.Console.WaitAsync(0, timeout.Token); }
                catch (OperationCanceledException) { throw new TimeoutException($"density VM {vm.Id}: no first exit in 30 s"); }
            }
            if (vm.Console.FirstWriteTimestamp is null) throw new InvalidOperationException($"density VM {vm.Id} ended before its first exit: {vm.Ended}");
            latencies.Add(Stopwatch.GetElapsedTime(t0, vm.Console.FirstWriteTimestamp!.Value).TotalMilliseconds);
        }
        return (vms, latencies);
    }

    private static async Task StopAll(VmHost host, List<HostedVm> vms)
    {
        await Task.WhenAll(vms.Select(v => host.StopAsync(v, "density bench", TimeSpan.FromSeconds(60))));
        foreach (var v in vms) host.Remove(v);
    }

    /// <summary>
    /// <paramref name="cycles"/> rounds of create N / stop N, then N live: the process's RSS beyond the warm host's
    /// (<paramref name="warmRss"/>, no VM) per live VM, so whatever the cycles left behind (native leaks, a GC heap
    /// that grew and was not given back) counts against the live VMs; and the managed heap per live VM.
    /// </summary>
    private static async Task<CycleFigures> Cycles(VmHost host, int n, int cycles, long warmRss)
    {
        for (var c = 0; c < cycles; c++)
        {
            var (round, _) = await CreateAll(host, n);
            await StopAll(host, round);
        }
        await Task.Delay(200);
        var heap0 = LiveHeap();
        var (vms, _) = await CreateAll(host, n);
        var heap1 = LiveHeap();
        var pause = GcPause();
        var (rss, _, _) = ProcessFigures.Read();
        var info = GC.GetGCMemoryInfo(GCKind.Any);
        if (Environment.GetEnvironmentVariable("KVMACTORS_DENSITY_SMAPS") is { Length: > 0 } dump) File.WriteAllText($"{dump}.{n}", File.ReadAllText("/proc/self/smaps"));
        await StopAll(host, vms);
        var perVm = (rss - warmRss) / (double)n / (1 << 20);
        return new CycleFigures(perVm - GuestRam / (double)(1 << 20), perVm, (heap1 - heap0) / (double)n / 1024, pause.Wall, rss / (double)(1 << 20),
            info.HeapSizeBytes / (double)(1 << 20), info.TotalCommittedBytes / (double)(1 << 20), info.FragmentedBytes / (double)(1 << 20));
    }

    /// <summary>The create stages in the order they happen (CreateTrace marks, then the first console byte).</summary>
    private static readonly string[] StageOrder =
        ["admitted", "vm-thread", "kvm-vm", "devices-created", "vcpu-thread", "vcpus-created", "devices-started", "vcpus-let-go", "vcpu-resumed", "first-exit"];

    /// <summary>
    /// Per stage, the median time from the previous stage (ms), over the VMs: where a create's time goes. "admitted" is
    /// the config part (parse, checks, binding, the host's admission); "first-exit" the guest's first byte in its console.
    /// </summary>
    private static JsonObject Stages(List<HostedVm> vms, List<long> starts, List<(string Vm, string Stage, long Timestamp)> marks)
    {
        var byVm = marks.GroupBy(m => m.Vm).ToDictionary(g => g.Key, g => g.GroupBy(m => m.Stage).ToDictionary(s => s.Key, s => s.Min(m => m.Timestamp)));
        var deltas = StageOrder.ToDictionary(s => s, _ => new List<double>());
        for (var i = 0; i < vms.Count; i++)
        {
            var at = byVm.GetValueOrDefault("vm-" + vms[i].Id) ?? new Dictionary<string, long>();
            at["admitted"] = vms[i].CreatedTimestamp;
            if (vms[i].Console.FirstWriteTimestamp is { } first) at["first-exit"] = first;
            var previous = starts[i];
            foreach (var s in StageOrder)
            {
                if (!at.TryGetValue(s, out var t)) continue;
                deltas[s].Add(Stopwatch.GetElapsedTime(previous, t).TotalMilliseconds);
                previous = t;
            }
        }
        var o = new JsonObject();
        foreach (var s in StageOrder)
            if (deltas[s].Count > 0)
            {
                deltas[s].Sort();
                o[s] = Math.Round(Percentile(deltas[s], 0.5), 3);
            }
        return o;
    }

    private static async Task<Figures> Round(VmHost host, int n, KvmFloor? floor = null)
    {
        await Task.Delay(200); // the previous round's VMs finish their release (deferred clean-up) before the baseline
        var heap0 = LiveHeap();
        var (rss0, threads0, fds0) = ProcessFigures.Read();
        var starts = new List<long>(n);
        CreateTrace.Drain();
        CreateTrace.Enabled = true;
        var floorSamples = new List<double>();
        var (vms, latencies) = await CreateAll(host, n, starts, floor, floorSamples, Math.Max(1, n / 20));
        CreateTrace.Enabled = false;
        var stages = Stages(vms, starts, CreateTrace.Drain());
        var (rss1, threads1, fds1) = ProcessFigures.Read();
        var heap1 = LiveHeap();
        var pause = GcPause();
        var ringKib = vms.Average(v => v.Console.Allocated) / 1024;
        floorSamples.Sort();
        // The config part of a create (HOCON parse, checks, binding), timed alone.
        var binds = new List<double>();
        for (int i = 0; i < Math.Min(n, 50); i++)
        {
            var t = Stopwatch.StartNew();
            GuestPreparation.Prepare(new GuestRequest(Guest, $"density-{i}", []), Environment.CurrentDirectory, "bind-only");
            binds.Add(t.Elapsed.TotalMilliseconds);
        }
        binds.Sort();
        // Each VM's vCPU thread (native id), to see whether it outlives its VM: checked the moment each VM's end is
        // recorded, then, for any still there, polled until gone.
        var tids = new List<int>(n);
        foreach (var v in vms)
            tids.Add((await v.Actor.Ask<VmStatus>(new GetVmStatus(), TimeSpan.FromSeconds(30))).Vcpus.Single().NativeThreadId);
        var endSeen = new long[n];
        var alive = new bool[n];
        var stop = Stopwatch.StartNew();
        await Task.WhenAll(vms.Select((v, i) => host.StopAsync(v, "density bench", TimeSpan.FromSeconds(60)).ContinueWith(_ =>
        {
            endSeen[i] = Stopwatch.GetTimestamp();
            alive[i] = Directory.Exists($"/proc/self/task/{tids[i]}");
        }, TaskContinuationOptions.ExecuteSynchronously)));
        var stopMs = stop.Elapsed.TotalMilliseconds;
        var lagMax = 0.0;
        var poll = Stopwatch.StartNew();
        for (var i = 0; i < n; i++)
        {
            while (alive[i] && Directory.Exists($"/proc/self/task/{tids[i]}") && poll.Elapsed < TimeSpan.FromSeconds(10)) await Task.Delay(1);
            if (alive[i]) lagMax = Math.Max(lagMax, Stopwatch.GetElapsedTime(endSeen[i]).TotalMilliseconds);
        }
        foreach (var v in vms) host.Remove(v);
        latencies.Sort();
        var perVm = (rss1 - rss0) / (double)n / (1 << 20);
        return new Figures(perVm - GuestRam / (double)(1 << 20), perVm, (threads1 - threads0) / (double)n, (fds1 - fds0) / (double)n,
            Percentile(latencies, 0.5), Percentile(latencies, 0.99), stopMs, Percentile(binds, 0.5), alive.Count(a => a), lagMax,
            (heap1 - heap0) / (double)n / 1024, ringKib, DeviceStateKib(), pause.Wall, pause.Reported, pause.Min, stages,
            floorSamples.Count > 0 ? Percentile(floorSamples, 0.5) : null, floorSamples.Count);
    }

    private static double Percentile(List<double> sorted, double p) =>
        sorted.Count == 0 ? 0 : sorted[Math.Clamp((int)Math.Ceiling(p * sorted.Count) - 1, 0, sorted.Count - 1)];

    private static string? FindOnPath(string exe) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
        .Select(d => Path.Combine(d, exe)).FirstOrDefault(File.Exists);

    /// <summary>
    /// The same guest as N QEMU processes: a 64 KiB BIOS image whose reset vector jumps to the same code at
    /// F000:0000 (print one byte on COM1, HLT). Per process: RSS beyond its 2 MiB of RAM, threads, fds; create →
    /// first byte on its serial (stdout); stop-all = SIGTERM to all and wait.
    /// </summary>
    private static async Task<JsonObject> Qemu(string qemu, int n)
    {
        var bios = Path.Combine(Path.GetTempPath(), $"kvmactors-density-{Environment.ProcessId}.bin");
        var image = new byte[64 * 1024];
        var code = Convert.FromHexString(GuestCode.Replace(" ", ""));
        code.CopyTo(image, 0);
        new byte[] { 0xea, 0x00, 0x00, 0x00, 0xf0 }.CopyTo(image, 0xfff0); // jmp far f000:0000
        await File.WriteAllBytesAsync(bios, image);
        var procs = new List<Process>();
        var latencies = new List<double>();
        try
        {
            foreach (var _ in Enumerable.Range(0, n))
            {
                var sw = Stopwatch.StartNew();
                var p = Process.Start(new ProcessStartInfo(qemu, ["-machine", "pc,accel=kvm", "-m", "2", "-nodefaults", "-display", "none",
                    "-serial", "stdio", "-bios", bios, "-monitor", "none"])
                { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false })!;
                procs.Add(p);
                var buffer = new char[1];
                var read = p.StandardOutput.ReadAsync(buffer, 0, 1);
                if (await Task.WhenAny(read, Task.Delay(30_000)) != read) throw new TimeoutException("qemu printed nothing in 30 s");
                latencies.Add(sw.Elapsed.TotalMilliseconds);
            }
            long rss = 0;
            int threads = 0, fds = 0;
            foreach (var p in procs)
            {
                foreach (var line in File.ReadLines($"/proc/{p.Id}/status"))
                {
                    if (line.StartsWith("VmRSS:")) rss += long.Parse(line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;
                    else if (line.StartsWith("Threads:")) threads += int.Parse(line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);
                }
                fds += Directory.GetFileSystemEntries($"/proc/{p.Id}/fd").Length;
            }
            var stop = Stopwatch.StartNew();
            foreach (var p in procs) p.Kill();
            foreach (var p in procs) await p.WaitForExitAsync();
            latencies.Sort();
            return new JsonObject
            {
                ["rss_per_vm_mib"] = Math.Round(rss / (double)n / (1 << 20) - 2, 3),
                ["threads_per_vm"] = Math.Round(threads / (double)n, 2),
                ["fds_per_vm"] = Math.Round(fds / (double)n, 2),
                ["create_ms_p50"] = Math.Round(Percentile(latencies, 0.5), 3),
                ["create_ms_p99"] = Math.Round(Percentile(latencies, 0.99), 3),
                ["stop_all_ms"] = Math.Round(stop.Elapsed.TotalMilliseconds, 1),
            };
        }
        finally
        {
            foreach (var p in procs) { try { if (!p.HasExited) p.Kill(); } catch (InvalidOperationException) { } p.Dispose(); }
            File.Delete(bios);
        }
    }
}

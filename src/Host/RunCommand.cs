using System.Diagnostics;
using System.Text;
using Microsoft.Win32.SafeHandles;
using Akka.Actor;
using Akka.Configuration;
using KvmActors.Runtime.Config;
using KvmActors.Runtime.Snapshot;
using KvmActors.Sdk;
using KvmActors.Runtime.Vm;
using Serilog;
using Serilog.Events;

namespace KvmActors.Host;

/// <summary>
/// <c>kvmactors run</c>: one VM from a guest file, ended by the guest, by <c>--timeout</c>, by a signal or by
/// stdout's reader going away. Every wait on the way out is bounded by <c>kvmactors.cli.stop-grace</c>, so a VM
/// that does not stop (still creating vCPUs, a device blocked on output) never keeps the process alive.
/// </summary>
public sealed class RunCommand(RunOptions options)
{
    private const string GraceKey = "kvmactors.cli.stop-grace";
    // How many stop-graces a stop may wait for the guest file and the actor system before the VM is launched.
    private const int SetupGraces = 10;
    private readonly Stopwatch _started = Stopwatch.StartNew();
    // Set once the guest file's own setting is read; before that, a stop waits for the default (read only then:
    // reading a duration from the defaults at start-up cost 30 ms of the run, Akka's duration regex being compiled).
    // Ticks, 0 until set: read by the stop path on another thread.
    private long _fileGraceTicks;
    private TimeSpan StopGrace
    {
        get => Interlocked.Read(ref _fileGraceTicks) is > 0 and var t ? TimeSpan.FromTicks(t) : KvmActorsConfig.Reference.GetTimeSpan(GraceKey);
        set => Interlocked.Exchange(ref _fileGraceTicks, value.Ticks);
    }
    private readonly TaskCompletionSource _launched = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public async Task<int> RunAsync()
    {
        StartupTrace.Mark("run-command");
        // The end path runs on pool threads (timers, continuations) while a VM's setup may block pool threads
        // (creating vCPUs), and the pool adds threads only slowly: start with enough that a stop is never late.
        ThreadPool.GetMinThreads(out var workers, out var io);
        ThreadPool.SetMinThreads(Math.Max(workers, 32), io);
        using var stops = new StopRequests(options.Timeout);
        // Console's own streams lock Console.Out around every write, to stdout and stderr alike: a guest write
        // blocked on a full stdout would block every stderr line (the summary, the logs). So stderr gets a writer
        // of its own on fd 2, and so does Console.Out: fd 1 carries only guest bytes (the sinks write it
        // directly), and anything written to Console.Out (e.g. Akka's fallback logger at shutdown) goes to stderr.
        StartupTrace.Mark("stops");
        var stderr = KeepCallersStderr ? Console.Error : StderrWriter();
        Console.SetError(stderr);
        Console.SetOut(stderr);
        var run = Task.Run(() => RunVmAsync(stops));
        if (await Task.WhenAny(run, stops.First) == run) return await run;
        // Once the VM is launched RunVmAsync answers the stop itself, every wait bounded; this bounds the setup
        // before that (loading the guest file, starting the actor system), generously: a slow start is not a stuck one.
        await Task.WhenAny(_launched.Task, run, Task.Delay(StopGrace * SetupGraces));
        if (_launched.Task.IsCompleted || run.IsCompleted) return await run;
        var stop = stops.First.Result;
        Console.Error.WriteLine($"kvmactors: {stop.Why}: the VM was not set up {(StopGrace * SetupGraces).TotalMilliseconds:0} ms later; exiting");
        return stop.Status;
    }

    /// <summary>
    /// Set by a command that runs a guest on behalf of another program and holds its stderr back (kvmactors qemu:
    /// harnesses fail a test on any stderr output): then Console.Error is left as that command set it.
    /// </summary>
    public static bool KeepCallersStderr { get; set; }

    /// <summary>How the last VM this process ran ended (kvmactors qemu decides from it whether its held stderr is shown).</summary>
    public static VmEndReason? LastEndReason { get; private set; }

    internal static TextWriter StderrWriter() => TextWriter.Synchronized(
        new StreamWriter(new FileStream(new SafeFileHandle(2, ownsHandle: false), FileAccess.Write, bufferSize: 0), new UTF8Encoding(false))
        {
            AutoFlush = true,
        });

    private async Task<int> RunVmAsync(StopRequests stops)
    {
        StartupTrace.Mark("run-vm");
        // Logs go to stderr through Serilog (Akka.Logger.Serilog); stdout carries only guest output. Set before the
        // actor system starts: its logger actor writes through it.
        Log.Logger = new LoggerConfiguration()
            .MinimumLevel.Is(SerilogLevel(options.LogLevel))
            .WriteTo.Console(standardErrorFromLevel: LogEventLevel.Verbose,
                outputTemplate: "[{Timestamp:HH:mm:ss.fff} {Level:u3}] {Message:lj}{NewLine}{Exception}")
            .CreateLogger();
        // The actor system's start (about a third of the process's start-up) depends on the guest only where the guest
        // sets kvmactors.* keys: it starts now, on another core, with the CLI's settings, while the guest file is read;
        // a guest with settings of its own gets a system started with them instead (README: "Benchmark", start-up).
        // Not started where the guest plainly has settings (a --set kvmactors.... or a file that names kvmactors): a
        // system started for nothing would only take the other core from the guest file's binding.
        var cliConfig = KvmActorsConfig.WithDefaults(AkkaConfig(options.LogLevel));
        var early = MayHaveRuntimeSettings() ? null : Task.Run(() =>
        {
            var s = ActorSystem.Create("kvmactors", cliConfig);
            StartupTrace.Mark("early-system");
            return s;
        });
        var snapshot = options.RestorePath is { } restorePath ? SnapshotFiles.Load(restorePath) : null;
        var spec = snapshot is not null
            ? GuestConfigLoader.FromSnapshot(snapshot, GuestConfigLoader.ConsoleRemap(snapshot.State.Guest.Config,
                // A VM saved by serve had its console attached to the API there: here it is this process's stdio.
                (option, value) => value.StartsWith(AttachedIo.Prefix, StringComparison.Ordinal) ? option == "sink" ? "stdout" : "none" : null))
            : options.ConfigPath is null
                ? GuestConfigLoader.FromText(BuiltInGuests.Seed, GuestConfigLoader.BuiltIn, Environment.CurrentDirectory, options.Sets)
                : GuestConfigLoader.LoadFile(options.ConfigPath, options.Sets);
        StartupTrace.Mark("guest-config");
        if (spec.Gdb is { } gdb)
            Console.Error.WriteLine($"kvmactors: gdb stub on {gdb.Listen}{(gdb.Wait ? "; the guest waits for gdb to attach and continue" : "")}");
        var runtimeConfig = spec.RuntimeConfig.IsEmpty ? cliConfig : KvmActorsConfig.WithDefaults(AkkaConfig(options.LogLevel).WithFallback(spec.RuntimeConfig));
        StopGrace = Grace(runtimeConfig, spec.SourceFile);
        if (options.ReportMemory is { Count: > 0 } ranges)
            spec = spec with { ReportMemory = EndReport.CheckMemoryRanges(ranges, spec.Machine.Memory, ReportMemoryLimit(runtimeConfig, spec.SourceFile)) };
        // The runtime settings (the kvmactors block, the same in runtimeConfig as in the system's config) and the KVM VM
        // (open /dev/kvm, KVM_CREATE_VM, memory, image, vCPU fds) are made here while the actor system starts on the
        // other core; the VM actor takes the machine over. A machine that cannot be created here is left to the VM
        // actor, whose set-up fails the same way and reports it as a VM that ended (the one path for that error).
        var settings = RuntimeSettingsBinder.Bind(runtimeConfig, spec.SourceFile, BuiltInDevices.Assemblies);
        Machine? prebuilt = null;
        if (snapshot is null)
            try { prebuilt = Machine.Create(spec.Machine, settings.KvmDevice); }
            catch (Exception) { prebuilt = null; }
        StartupTrace.Mark("machine");
        ActorSystem system;
        if (early is not null && spec.RuntimeConfig.IsEmpty) system = await early;
        else
        {
            _ = early?.ContinueWith(t => t.Result.Terminate(), TaskContinuationOptions.OnlyOnRanToCompletion);
            system = ActorSystem.Create("kvmactors", runtimeConfig);
        }
        StartupTrace.Mark("actor-system");
        var stopped = true;
        try
        {
            var (vm, ended) = VmLauncher.Launch(system, spec, settings, "vm", snapshot is null ? null : VmRestore.From(snapshot), prebuilt);
            _launched.TrySetResult();
            StartupTrace.Mark("launched");
            StopRequest? stop = null;
            if (await Task.WhenAny(ended, stops.First) != ended)
            {
                stop = stops.First.Result;
                vm.Tell(new StopVm(stop.Why));
                // The grace counts from when the stop was due, not from when this continuation ran: a timer or a
                // pool thread running late on a busy host does not stretch the bound.
                var left = StopGrace - Stopwatch.GetElapsedTime(stop.At);
                if (left > TimeSpan.Zero) await Task.WhenAny(ended, Task.Delay(left));
            }
            StartupTrace.Mark("ended");
            stopped = ended.IsCompleted;
            var result = stopped
                ? ended.Result
                : new VmEnded(spec.Name, VmEndReason.StoppedOnRequest, $"{stop!.Why}; the VM had not stopped {StopGrace.TotalMilliseconds:0} ms after the request",
                    0, null, []);
            var status = StatusOf(result, stop);
            Summarise(result);
            LastEndReason = result.Reason;
            EndReport.WriteMemoryText(Console.Error, result.MemoryDumps);
            if (options.ReportPath is { } path) EndReport.TryWrite(path, result, status, _started.Elapsed, StopGrace);
            return status;
        }
        finally
        {
            // A VM that did not stop would hold up the actor system's termination: the process exit ends it instead
            // (the kernel releases its fds, mappings and threads). One grace for the shutdown and the log's flush.
            var shutdown = Task.Delay(StopGrace);
            if (stopped) await Task.WhenAny(system.Terminate(), shutdown);
            StartupTrace.Mark("terminated");
            await Task.WhenAny(Log.CloseAndFlushAsync().AsTask(), shutdown);
            StartupTrace.Mark("flushed");
        }
    }

    /// <summary>A guess, only for whether to start the actor system early: the loaded guest's own settings decide.</summary>
    private bool MayHaveRuntimeSettings()
    {
        if (options.Sets.Any(set => set.TrimStart().StartsWith("kvmactors", StringComparison.Ordinal))) return true;
        if (options.ConfigPath is not { } path || options.RestorePath is not null) return false;
        // Read as the loader reads it (a regular file, bounded; never a FIFO); a file that cannot be read is the loader's to report.
        try { return Encoding.UTF8.GetString(ConfigFiles.Read(Path.GetFullPath(path), path, GuestConfigLoader.MaxConfigBytes, "a guest file",
                  problem => new ConfigException(path, "(file)", problem))).Contains("kvmactors", StringComparison.Ordinal); }
        catch (ConfigException) { return false; }
    }

    /// <summary>
    /// The precedence of end statuses: a stop the CLI asked for (timeout, signal, stdout closed) decides only if
    /// the VM ended because of it; a VM that ended by itself first (halt, debug exit, guest failure) keeps its own.
    /// </summary>
    public static int StatusOf(VmEnded ended, StopRequest? stop)
    {
        if (stop is not null && ended.Reason == VmEndReason.StoppedOnRequest) return stop.Status;
        return ended.Reason switch
        {
            VmEndReason.Halted or VmEndReason.ResetRequested or VmEndReason.StoppedOnRequest or VmEndReason.Migrated => ExitCodes.Ok,
            VmEndReason.GuestExit => ended.ExitStatus,
            VmEndReason.GuestFailure => ExitCodes.Failure,
            _ => ended.ExitStatus == 0 ? ExitCodes.Failure : ended.ExitStatus,
        };
    }

    /// <summary>The end summary on stderr: how the VM ended, and for a guest failure its registers and instruction.</summary>
    private static void Summarise(VmEnded ended)
    {
        var exits = ended.Vcpus.Sum(v => v.Exits);
        var restarts = ended.ActorFailures.Count(f => f.Restarted);
        Console.Error.WriteLine($"kvmactors: {ended.VmName}: {ended.Reason}: {ended.Detail}{ErrorReport.FdLimitNote(ended.Detail)} " +
                                $"({ended.Vcpus.Count} vCPU(s), {exits} exits{(restarts > 0 ? $", {restarts} actor restart(s)" : "")})");
        if (ended.Failure is { } f) Console.Error.WriteLine(f.Describe());
    }

    /// <summary>The CLI's actor system settings: Akka logs through Serilog (to stderr), nothing on stdout, no CLR exit hook.</summary>
    internal static Config AkkaConfig(string logLevel) => ConfigurationFactory.ParseString($$"""
        akka {
          loggers = ["Akka.Logger.Serilog.SerilogLogger, Akka.Logger.Serilog"]
          loglevel = {{AkkaLevel(logLevel)}}
          stdout-loglevel = OFF
          log-config-on-start = off
          log-dead-letters = off
          log-dead-letters-during-shutdown = off
          # The CLI bounds its own shutdown; a CLR exit hook would run the coordinated shutdown again, unbounded.
          coordinated-shutdown.run-by-clr-shutdown-hook = off
        }
        """);

    internal static TimeSpan Grace(Config config, string file)
    {
        TimeSpan grace;
        try { grace = config.GetTimeSpan(GraceKey); }
        catch (Exception e) when (e is FormatException or OverflowException or ConfigurationException)
        {
            throw new ConfigException(file, GraceKey, $"not a duration: {e.Message}");
        }
        return grace > TimeSpan.Zero && grace <= TimeSpan.FromMinutes(1)
            ? grace
            : throw new ConfigException(file, GraceKey, $"{grace} is outside 1ms..1m");
    }

    private const string ReportMemoryKey = "kvmactors.cli.report-memory-limit";

    private static ulong ReportMemoryLimit(Config config, string file)
    {
        var text = config.GetString(ReportMemoryKey);
        return ConfigNumbers.TryParse(text, out var limit) && limit is > 0 and <= 64UL << 20
            ? limit
            : throw new ConfigException(file, ReportMemoryKey, $"'{text}' is not a size from 1 to 64M");
    }

    private static LogEventLevel SerilogLevel(string level) => level switch
    {
        "verbose" => LogEventLevel.Verbose,
        "debug" => LogEventLevel.Debug,
        "info" => LogEventLevel.Information,
        "error" => LogEventLevel.Error,
        _ => LogEventLevel.Warning,
    };

    private static string AkkaLevel(string level) => level switch
    {
        "verbose" or "debug" => "DEBUG",
        "info" => "INFO",
        "error" => "ERROR",
        _ => "WARNING",
    };
}

using Akka.Actor;
using Akka.Configuration;
using KvmActors.Host;
using KvmActors.Runtime.Config;
using KvmActors.Runtime.Vm;
using KvmActors.Sdk;
using Serilog;
using Serilog.Events;

// kvmactors: stdout carries exactly the guest's serial output; everything else goes to stderr.
return await Cli.RunAsync(args);

namespace KvmActors.Host
{
    public static class ExitCodes
    {
        public const int Ok = 0, GuestFailure = 1, Usage = 2, Timeout = 124, Interrupted = 130;
    }

    public static class Cli
    {
        public static async Task<int> RunAsync(string[] args)
        {
            if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
            {
                Console.Error.WriteLine(CommandLine.Usage);
                return args.Length == 0 ? ExitCodes.Usage : ExitCodes.Ok;
            }
            try
            {
                return args[0] switch
                {
                    "run" => await Run(CommandLine.ParseRun(args.Skip(1).ToList())),
                    "bench" => await Bench.BenchCommand.RunAsync(Bench.BenchOptions.Parse(args.Skip(1).ToList())),
                    "qemu" => await Qemu.QemuCommand.RunAsync(args[1..]),
                    _ => throw new UsageException($"unknown command '{args[0]}'"),
                };
            }
            catch (UsageException e)
            {
                Console.Error.WriteLine($"kvmactors: {e.Message}");
                Console.Error.WriteLine(CommandLine.Usage);
                return ExitCodes.Usage;
            }
            catch (ConfigException e)
            {
                Console.Error.WriteLine($"kvmactors: config error: {e.Message}");
                return ExitCodes.Usage;
            }
        }

        private static async Task<int> Run(RunOptions options)
        {
            var spec = options.ConfigPath is null
                ? GuestConfigLoader.FromText(BuiltInGuests.Seed, GuestConfigLoader.BuiltIn, Environment.CurrentDirectory, options.Sets)
                : GuestConfigLoader.LoadFile(options.ConfigPath, options.Sets);

            // Logs go to stderr through Serilog (Akka.Logger.Serilog); stdout carries only guest output.
            Log.Logger = new LoggerConfiguration()
                .MinimumLevel.Is(SerilogLevel(options.LogLevel))
                .WriteTo.Console(standardErrorFromLevel: LogEventLevel.Verbose,
                    outputTemplate: "[{Timestamp:HH:mm:ss.fff} {Level:u3}] {Message:lj}{NewLine}{Exception}")
                .CreateLogger();
            var akkaConfig = ConfigurationFactory.ParseString($$"""
                akka {
                  loggers = ["Akka.Logger.Serilog.SerilogLogger, Akka.Logger.Serilog"]
                  loglevel = {{AkkaLevel(options.LogLevel)}}
                  stdout-loglevel = OFF
                  log-config-on-start = off
                  log-dead-letters = off
                  log-dead-letters-during-shutdown = off
                }
                """);
            var system = ActorSystem.Create("kvmactors", KvmActorsConfig.WithDefaults(akkaConfig.WithFallback(spec.RuntimeConfig)));
            try
            {
                var started = System.Diagnostics.Stopwatch.StartNew();
                var (vm, ended) = VmLauncher.Launch(system, spec, RuntimeSettingsBinder.Bind(system.Settings.Config, spec.SourceFile), "vm");

                var interrupted = new TaskCompletionSource();
                ConsoleCancelEventHandler onCancel = (_, e) => { e.Cancel = true; interrupted.TrySetResult(); };
                Console.CancelKeyPress += onCancel;
                try
                {
                    // --timeout bounds the whole run, counted from the process's start (like timeout(1)).
                    var timeout = options.Timeout is { } t
                        ? Task.Delay(Max(TimeSpan.Zero, t - (DateTime.Now - System.Diagnostics.Process.GetCurrentProcess().StartTime)))
                        : Task.Delay(Timeout.Infinite);
                    var first = await Task.WhenAny(ended, timeout, interrupted.Task);
                    int? forced = null;
                    if (first != ended)
                    {
                        forced = first == timeout ? ExitCodes.Timeout : ExitCodes.Interrupted;
                        vm.Tell(new StopVm(first == timeout ? $"timeout after {options.Timeout}" : "interrupted"));
                    }
                    var result = await ended;
                    var status = ExitStatus(result, forced);
                    Summarise(result);
                    if (options.ReportPath is { } path) EndReport.Write(path, result, status, started.Elapsed);
                    return status;
                }
                finally
                {
                    Console.CancelKeyPress -= onCancel;
                }
            }
            finally
            {
                await system.Terminate();
                await Log.CloseAndFlushAsync();
            }
        }

        /// <summary>The end summary on stderr: how the VM ended, and for a guest failure its registers and instruction.</summary>
        private static void Summarise(VmEnded ended)
        {
            var exits = ended.Vcpus.Sum(v => v.Exits);
            var restarts = ended.ActorFailures.Count(f => f.Restarted);
            Console.Error.WriteLine($"kvmactors: {ended.VmName}: {ended.Reason}: {ended.Detail} " +
                                    $"({ended.Vcpus.Count} vCPU(s), {exits} exits{(restarts > 0 ? $", {restarts} actor restart(s)" : "")})");
            if (ended.Failure is { } f) Console.Error.WriteLine(f.Describe());
        }

        private static int ExitStatus(VmEnded ended, int? forced)
        {
            if (forced is { } code) return code;
            return ended.Reason switch
            {
                VmEndReason.Halted or VmEndReason.ResetRequested or VmEndReason.StoppedOnRequest => ExitCodes.Ok,
                VmEndReason.GuestExit => ended.ExitStatus,
                VmEndReason.GuestFailure => ExitCodes.GuestFailure,
                _ => ended.ExitStatus == 0 ? ExitCodes.GuestFailure : ended.ExitStatus,
            };
        }

        private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;

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
}

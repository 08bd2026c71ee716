using System.CommandLine;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Akka.Actor;
using Akka.Configuration;
using Akka.Hosting;
using KvmActors.Runtime.Config;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Serilog;
using Serilog.Core;
using Serilog.Events;

namespace KvmActors.Host.Serve;

/// <summary>
/// <c>kvmactors serve</c>: a long-running VM host. A generic host with Akka.Hosting (one actor system, every VM
/// a top-level actor tree) and ASP.NET Core minimal APIs on Kestrel, on a Unix socket (mode 0600) and, when
/// asked, on TCP (loopback unless --allow-remote). Logs go to stderr; stdout carries nothing.
/// </summary>
public static class ServeCommand
{
    public static string DefaultSocket() =>
        Environment.GetEnvironmentVariable("XDG_RUNTIME_DIR") is { Length: > 0 } xdg
            ? Path.Combine(xdg, "kvmactors.sock")
            : "/run/kvmactors/kvmactors.sock";

    public sealed record Options(string Socket, IReadOnlyList<(IPAddress Address, int Port)> Tcp, string? ConfigPath, string GuestDir,
        string? ReportDir, string LogLevel, string SnapshotDir);

    public static async Task<int> RunAsync(string[] args)
    {
        var socket = new Option<string?>("--socket") { Description = $"Unix socket to serve on (default $XDG_RUNTIME_DIR/kvmactors.sock, else /run/kvmactors/kvmactors.sock)" };
        var listen = new Option<string[]>("--listen") { Description = "also serve on TCP: tcp:127.0.0.1:PORT (repeatable)", Arity = ArgumentArity.ZeroOrMore };
        var allowRemote = new Option<bool>("--allow-remote") { Description = "allow a non-loopback --listen address (the API has no authentication)" };
        var config = new Option<string?>("--config") { Description = "host HOCON file (host.max-vms, host.max-vcpus-total, host.max-memory-total, host.console-ring ...)" };
        var guestDir = new Option<string?>("--guest-dir") { Description = "folder that relative file paths of posted guests resolve against, and may not leave (default: the current directory)" };
        var reportDir = new Option<string?>("--report-dir") { Description = "write each VM's end report there as ID.json" };
        var snapshotDir = new Option<string?>("--snapshot-dir") { Description = "folder that snapshot paths of the API (snapshot, restore) are relative to and may not leave (default: GUEST-DIR/snapshots)" };
        var logLevel = new Option<string>("--log-level") { Description = "verbose, debug, info (default), warning, error", DefaultValueFactory = _ => "info" };
        logLevel.AcceptOnlyFromAmong("verbose", "debug", "info", "warning", "error");
        // The fleet (Fleet/): a cluster node; without --cluster serve is a single host.
        var cluster = new Option<string?>("--cluster") { Description = "join a fleet: this node's cluster address HOST:PORT (loopback unless --allow-remote)" };
        var seed = new Option<string[]>("--seed") { Description = "with --cluster: a seed node's HOST:PORT (repeatable; default: this node founds the cluster)", Arity = ArgumentArity.ZeroOrMore };
        var role = new Option<string?>("--role") { Description = "with --cluster: kvm-host (default: runs VMs) or api (API only, no /dev/kvm needed)" };
        role.AcceptOnlyFromAmong(Fleet.FleetOptions.KvmHostRole, Fleet.FleetOptions.ApiRole);
        var drainOnExit = new Option<bool>("--drain-on-exit") { Description = "with --cluster: on SIGTERM move every VM to other nodes by live migration before leaving (kvmactors.fleet.drain.on-exit-timeout)" };
        var journal = new Option<string?>("--journal") { Description = "with --cluster: the fleet's SQLite journal file (shared by all nodes): VMs come back after a whole-cluster restart (kvmactors.fleet.journal)" };
        var command = new Command("serve", "Run a VM host with an HTTP API") { socket, listen, allowRemote, config, guestDir, reportDir, snapshotDir, logLevel, cluster, seed, role, drainOnExit, journal, new System.CommandLine.Help.HelpOption() };
        var parsed = command.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            foreach (var e in parsed.Errors) Console.Error.WriteLine($"kvmactors serve: {e.Message}");
            return ExitCodes.Usage;
        }
        if (parsed.Action is System.CommandLine.Help.HelpAction)
        {
            await parsed.InvokeAsync();
            return ExitCodes.Ok;
        }

        var tcp = new List<(IPAddress, int)>();
        foreach (var l in parsed.GetValue(listen) ?? [])
        {
            if (!TryParseListen(l, out var address, out var port))
            {
                Console.Error.WriteLine($"kvmactors serve: --listen '{l}': expected tcp:ADDRESS:PORT (e.g. tcp:127.0.0.1:8080)");
                return ExitCodes.Usage;
            }
            if (!IPAddress.IsLoopback(address) && !parsed.GetValue(allowRemote))
            {
                Console.Error.WriteLine($"kvmactors serve: --listen '{l}': {address} is not a loopback address; the API has no authentication, so add --allow-remote to mean it");
                return ExitCodes.Usage;
            }
            tcp.Add((address, port));
        }
        if (Fleet.FleetOptions.TryParse(parsed.GetValue(cluster), parsed.GetValue(seed) ?? [], parsed.GetValue(role), parsed.GetValue(allowRemote), out var fleet) is { } fleetError)
        {
            Console.Error.WriteLine($"kvmactors serve: {fleetError}");
            return ExitCodes.Usage;
        }
        if (parsed.GetValue(drainOnExit))
        {
            if (fleet is null)
            {
                Console.Error.WriteLine("kvmactors serve: --drain-on-exit needs --cluster HOST:PORT (it moves the VMs to other nodes of the fleet)");
                return ExitCodes.Usage;
            }
            if (fleet.Role != Fleet.FleetOptions.KvmHostRole)
            {
                Console.Error.WriteLine($"kvmactors serve: --drain-on-exit: a --role {fleet.Role} node runs no VMs, so it has none to move");
                return ExitCodes.Usage;
            }
            fleet = fleet with { DrainOnExit = true };
        }
        var dir = Path.GetFullPath(parsed.GetValue(guestDir) ?? Environment.CurrentDirectory);
        if (!Directory.Exists(dir))
        {
            Console.Error.WriteLine($"kvmactors serve: --guest-dir '{dir}': no such directory");
            return ExitCodes.Usage;
        }
        var reports = parsed.GetValue(reportDir) is { } rd ? Path.GetFullPath(rd) : null;
        if (reports is not null) Directory.CreateDirectory(reports);
        var options = new Options(Path.GetFullPath(parsed.GetValue(socket) ?? DefaultSocket()), tcp, parsed.GetValue(config), dir, reports,
            parsed.GetValue(logLevel)!, Path.GetFullPath(parsed.GetValue(snapshotDir) ?? Path.Combine(dir, "snapshots")));
        HostSettings settings;
        try { settings = HostSettings.Load(options.ConfigPath); }
        catch (ConfigException e)
        {
            Console.Error.WriteLine($"kvmactors serve: config error: {e.Message}");
            return ExitCodes.Usage;
        }
        if (Fleet.FleetJournal.FromCommandLine(parsed.GetValue(journal), options.ConfigPath, settings, fleet, out var journalPath) is { } journalError)
        {
            Console.Error.WriteLine($"kvmactors serve: {journalError}");
            return ExitCodes.Usage;
        }
        if (fleet is not null) fleet = fleet with { Journal = journalPath };
        // Other nodes send migrations to this node's API: over TCP when it listens there (other machines reach it), else its socket.
        fleet = fleet is null ? null : fleet with
        {
            ApiEndpoint = tcp.Count > 0 ? $"http://{new IPEndPoint(tcp[0].Item1, tcp[0].Item2)}" : $"unix:{options.Socket}",
        };
        return await Serve(options, settings, fleet);
    }

    public static bool TryParseListen(string text, out IPAddress address, out int port)
    {
        address = IPAddress.None;
        port = 0;
        var t = text.StartsWith("tcp:") ? text[4..] : text;
        var colon = t.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(t[(colon + 1)..], out port) || port is < 0 or > 65535) return false;
        var host = t[..colon].Trim('[', ']');
        if (host == "localhost") { address = IPAddress.Loopback; return true; }
        return IPAddress.TryParse(host, out address!);
    }

    private static async Task<int> Serve(Options options, HostSettings settings, Fleet.FleetOptions? fleet)
    {
        Log.Logger = ServeLogging.CreateLogger(options.LogLevel);
        try
        {
            if (!PrepareSocket(options.Socket)) return ExitCodes.GuestFailure;

            var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [], ContentRootPath = Environment.CurrentDirectory });
            builder.Logging.ClearProviders();
            builder.Services.AddSerilog();
            // With --drain-on-exit the drain comes first, bounded by its own timeout (and the shard handoffs'): the whole stop waits for it.
            var drainTime = TimeSpan.Zero;
            if (fleet is { DrainOnExit: true })
            {
                var fleetConfig = KvmActorsConfig.WithDefaults(settings.RuntimeConfig).GetConfig("kvmactors.fleet");
                drainTime = fleetConfig.GetTimeSpan("drain.on-exit-timeout") + fleetConfig.GetTimeSpan("drain.handoff-timeout");
            }
            builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(30) + drainTime);
            builder.WebHost.ConfigureKestrel(k =>
            {
                k.ListenUnixSocket(options.Socket);
                foreach (var (address, port) in options.Tcp) k.Listen(address, port);
                k.AddServerHeader = false;
            });
            var akkaConfig = ConfigurationFactory.ParseString($$"""
                akka {
                  loglevel = {{ServeLogging.AkkaLevel(options.LogLevel)}}
                  stdout-loglevel = OFF
                  log-config-on-start = off
                  log-dead-letters = off
                  log-dead-letters-during-shutdown = off
                  coordinated-shutdown.run-by-clr-shutdown-hook = off
                }
                """);
            if (fleet is not null) Fleet.FleetSetup.AddServices(builder.Services, fleet);
            builder.Services.AddAkka(Fleet.FleetOptions.SystemName, (akka, sp) =>
            {
                if (fleet is not null) Fleet.FleetSetup.AddToAkka(akka, fleet, sp, settings.RuntimeConfig);
                akka.AddHocon(KvmActorsConfig.WithDefaults(settings.RuntimeConfig.IsEmpty ? akkaConfig : akkaConfig.WithFallback(settings.RuntimeConfig)), HoconAddMode.Prepend);
                akka.ConfigureLoggers(l =>
                {
                    l.LogLevel = ServeLogging.AkkaLogLevel(options.LogLevel);
                    l.ClearLoggers();
                    l.AddLogger<Akka.Logger.Serilog.SerilogLogger>();
                });
            });
            builder.Services.AddSingleton(sp => new VmHost(sp.GetRequiredService<ActorSystem>(), settings, options.GuestDir, options.ReportDir, options.SnapshotDir));
            // Registered after AddAkka, so stopped before the actor system: every VM ends (and reports) first.
            builder.Services.AddHostedService(sp => new VmHostLifetime(sp.GetRequiredService<VmHost>()));
            // Registered after it, so stopped before it: the VMs move away before the host stops what is left.
            if (fleet is { DrainOnExit: true }) builder.Services.AddHostedService(sp => new Fleet.FleetDrainOnExit(sp.GetRequiredService<Fleet.FleetRuntime>()));

            await using var app = builder.Build();
            ServeApi.Map(app);

            // The socket is created by Kestrel's bind: with umask 077 it is born 0600, then chmod makes sure.
            var old = Umask(0x3f);
            try { await app.StartAsync(); }
            finally { Umask(old); }
            if (OperatingSystem.IsLinux()) File.SetUnixFileMode(options.Socket, UnixFileMode.UserRead | UnixFileMode.UserWrite);

            Log.Information("kvmactors serve: listening on unix:{Socket}{Tcp}; guest dir {GuestDir}; limits: {MaxVms} VMs, {MaxVcpus} vCPUs, {MaxMemory} bytes",
                options.Socket, string.Concat(options.Tcp.Select(t => $", tcp:{t.Address}:{t.Port}")), options.GuestDir,
                settings.MaxVms, settings.MaxVcpusTotal, settings.MaxMemoryTotal);
            await app.WaitForShutdownAsync();
            if (fleet is not null && Fleet.FleetRecoverySetup.Downed)
            {
                Log.Error("kvmactors serve: this node was downed by the cluster (split brain resolver); start it again to rejoin as a new node");
                return ExitCodes.GuestFailure;
            }
            Log.Information("kvmactors serve: stopped");
            return ExitCodes.Ok;
        }
        catch (IOException e)
        {
            Log.Error("kvmactors serve: {Error}", e.Message);
            return ExitCodes.GuestFailure;
        }
        finally
        {
            try { if (File.Exists(options.Socket)) File.Delete(options.Socket); } catch (IOException) { }
            await Log.CloseAndFlushAsync();
        }
    }

    /// <summary>Creates the socket's folder (0700 when new); removes a stale socket, refuses a live one.</summary>
    private static bool PrepareSocket(string path)
    {
        var dir = Path.GetDirectoryName(path)!;
        if (!Directory.Exists(dir) && OperatingSystem.IsLinux()) Directory.CreateDirectory(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        if (!File.Exists(path)) return true;
        using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            probe.Connect(new UnixDomainSocketEndPoint(path));
            Log.Error("kvmactors serve: another server is listening on {Socket}", path);
            return false;
        }
        catch (SocketException)
        {
            File.Delete(path); // nobody answers: a stale socket of an earlier run
            return true;
        }
    }

    [DllImport("libc", EntryPoint = "umask")]
    private static extern int Umask(int mask);

    private sealed class VmHostLifetime(VmHost host) : IHostedService
    {
        public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;
        public Task StopAsync(CancellationToken cancellationToken) => host.StopAllAsync(TimeSpan.FromSeconds(20));
    }
}

/// <summary>Serve's logging: Serilog to stderr, with the VM id as a property (VmId) on every VM's log lines.</summary>
public static class ServeLogging
{
    public static Serilog.ILogger CreateLogger(string level)
    {
        var min = level switch
        {
            "verbose" => LogEventLevel.Verbose, "debug" => LogEventLevel.Debug, "warning" => LogEventLevel.Warning,
            "error" => LogEventLevel.Error, _ => LogEventLevel.Information,
        };
        return new LoggerConfiguration()
            .MinimumLevel.Is(min)
            .MinimumLevel.Override("Microsoft", min < LogEventLevel.Warning ? LogEventLevel.Warning : min)
            .Enrich.With(new VmIdEnricher())
            .WriteTo.Console(standardErrorFromLevel: LogEventLevel.Verbose,
                outputTemplate: "[{Timestamp:HH:mm:ss.fff} {Level:u3}] {VmTag}{Message:lj}{NewLine}{Exception}")
            .CreateLogger();
    }

    public static string AkkaLevel(string level) => level switch
    {
        "verbose" or "debug" => "DEBUG", "info" => "INFO", "error" => "ERROR", _ => "WARNING",
    };

    public static Akka.Event.LogLevel AkkaLogLevel(string level) => level switch
    {
        "verbose" or "debug" => Akka.Event.LogLevel.DebugLevel, "info" => Akka.Event.LogLevel.InfoLevel,
        "error" => Akka.Event.LogLevel.ErrorLevel, _ => Akka.Event.LogLevel.WarningLevel,
    };

    /// <summary>Takes the VM id from an Akka log line's source (…/user/vm-ID/…) or from a VmId property.</summary>
    private sealed class VmIdEnricher : ILogEventEnricher
    {
        public void Enrich(LogEvent e, ILogEventPropertyFactory factory)
        {
            string? id = null;
            if (e.Properties.TryGetValue("VmId", out var v) && v is ScalarValue { Value: string s }) id = s;
            else
            {
                foreach (var key in new[] { "LogSource", "ActorPath" })
                {
                    if (!e.Properties.TryGetValue(key, out var p) || p is not ScalarValue { Value: var raw } || raw?.ToString() is not { } text) continue;
                    var at = text.IndexOf("/user/vm-", StringComparison.Ordinal);
                    if (at < 0) continue;
                    var start = at + "/user/vm-".Length;
                    var end = text.IndexOfAny(['/', ']', '#', ' '], start);
                    id = end < 0 ? text[start..] : text[start..end];
                    break;
                }
                if (id is not null) e.AddPropertyIfAbsent(factory.CreateProperty("VmId", id));
            }
            e.AddPropertyIfAbsent(factory.CreateProperty("VmTag", id is null ? "" : $"vm={id} "));
        }
    }
}

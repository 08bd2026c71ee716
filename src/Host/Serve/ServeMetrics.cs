using System.Diagnostics;
using KvmActors.Runtime.Vm;
using Prometheus;

namespace KvmActors.Host.Serve;

/// <summary>The host's Prometheus metrics (prometheus-net, its own registry so only these are exported).</summary>
public sealed class ServeMetrics
{
    public CollectorRegistry Registry { get; } = Metrics.NewCustomRegistry();

    private readonly Gauge _vms;
    private readonly Counter _created;
    private readonly Counter _refused;
    private readonly Counter _ended;
    private readonly Counter _exits;
    private readonly Counter _vmExits;
    private readonly Counter _restarts;
    private readonly Counter _consoleBytes;
    private readonly Counter _consoleInputBytes;
    private readonly Gauge _rss;
    private readonly Gauge _threads;
    private readonly Gauge _fds;

    public ServeMetrics(Func<IReadOnlyDictionary<string, int>> vmsByState)
    {
        var f = Metrics.WithCustomRegistry(Registry);
        _vms = f.CreateGauge("kvmactors_vms", "VMs by state.", "state");
        _created = f.CreateCounter("kvmactors_vms_created_total", "VMs created through the API.");
        _refused = f.CreateCounter("kvmactors_vms_refused_total", "POST /vms refused, by HTTP status.", "status");
        _ended = f.CreateCounter("kvmactors_vms_ended_total", "VMs ended, by end reason.", "reason");
        _exits = f.CreateCounter("kvmactors_exits_total", "vCPU exits of ended VMs, by exit reason (rate() gives exits/s).", "reason");
        _vmExits = f.CreateCounter("kvmactors_vm_exits_total", "vCPU exits of each ended VM still known to the host, by exit reason.", "vm", "reason");
        _restarts = f.CreateCounter("kvmactors_actor_restarts_total", "Actor restarts (vCPU and device actors) in ended VMs.");
        _consoleBytes = f.CreateCounter("kvmactors_console_bytes_total", "Bytes the guests wrote to their consoles.");
        _consoleInputBytes = f.CreateCounter("kvmactors_console_input_bytes_total", "Bytes posted to the guests' console inputs.");
        _rss = f.CreateGauge("kvmactors_host_rss_bytes", "Resident set size of the host process.");
        _threads = f.CreateGauge("kvmactors_host_threads", "Threads of the host process.");
        _fds = f.CreateGauge("kvmactors_host_fds", "Open file descriptors of the host process.");
        foreach (var s in VmStates.All) _vms.WithLabels(s).Set(0);
        Registry.AddBeforeCollectCallback(() =>
        {
            var byState = vmsByState();
            foreach (var s in VmStates.All) _vms.WithLabels(s).Set(byState.GetValueOrDefault(s));
            var (rss, threads, fds) = ProcessFigures.Read();
            _rss.Set(rss);
            _threads.Set(threads);
            _fds.Set(fds);
        });
    }

    public void Created() => _created.Inc();
    public void Refused(int status) => _refused.WithLabels(status.ToString()).Inc();
    public void ConsoleBytes(int n) => _consoleBytes.Inc(n);
    public void ConsoleInput(int n) => _consoleInputBytes.Inc(n);

    public void Ended(string id, VmEnded ended)
    {
        _ended.WithLabels(ended.Reason.ToString()).Inc();
        foreach (var v in ended.Vcpus)
            foreach (var (reason, n) in v.ExitsByReason)
            {
                _exits.WithLabels(reason).Inc(n);
                _vmExits.WithLabels(id, reason).Inc(n);
            }
        _restarts.Inc(ended.ActorFailures.Count(a => a.Restarted));
    }

    /// <summary>A forgotten VM's per-VM series go too, so the exporter does not grow with every VM ever run.</summary>
    public void Forget(string id, VmEnded? ended)
    {
        if (ended is null) return;
        foreach (var reason in ended.Vcpus.SelectMany(v => v.ExitsByReason.Keys).Distinct())
            _vmExits.RemoveLabelled(id, reason);
    }
}

public static class VmStates
{
    public const string Creating = "creating", Running = "running", Paused = "paused", Ended = "ended";
    public static readonly string[] All = [Creating, Running, Paused, Ended];
}

/// <summary>The process's RSS, threads and fds, read from /proc/self.</summary>
public static class ProcessFigures
{
    public static (long RssBytes, int Threads, int Fds) Read()
    {
        long rss = 0;
        int threads = 0;
        try
        {
            foreach (var line in File.ReadLines("/proc/self/status"))
            {
                if (line.StartsWith("VmRSS:")) rss = long.Parse(line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
                else if (line.StartsWith("Threads:")) threads = int.Parse(line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)[1]);
            }
        }
        catch (IOException) { }
        int fds = 0;
        try { fds = Directory.EnumerateFileSystemEntries("/proc/self/fd").Count(); }
        catch (IOException) { }
        if (threads == 0) threads = Process.GetCurrentProcess().Threads.Count;
        return (rss, threads, fds);
    }
}

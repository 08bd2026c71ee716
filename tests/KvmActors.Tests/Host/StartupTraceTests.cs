using KvmActors.Tests.Support;
using Xunit;

namespace KvmActors.Tests.Host;

/// <summary>
/// kvmactors run's start-up paths (README: "Benchmark", "Start-up"): the checkpoints KVMACTORS_STARTUP_TRACE=1 writes,
/// and the seed guest run both with the actor system started early and with one started for the guest's own settings.
/// </summary>
public sealed class StartupTraceTests
{
    [KvmFact]
    public void With_the_trace_switch_run_writes_its_checkpoints_in_order_to_stderr_and_only_the_guest_bytes_to_stdout()
    {
        var psi = Kvmactors.StartInfo("run");
        psi.Environment["KVMACTORS_STARTUP_TRACE"] = "1";
        var r = Kvmactors.RunProcess(psi, TimeSpan.FromSeconds(60));
        Assert.Equal(0, r.ExitCode);
        Assert.Equal("4\n", r.Stdout);
        var marks = r.Stderr.Split('\n').Where(l => l.StartsWith("kvmactors-startup: ", StringComparison.Ordinal))
            .Select(l => l.Split(' ')).ToDictionary(p => p[1], p => long.Parse(p[2]));
        string[] order = ["main", "run-vm", "guest-config", "machine", "actor-system", "launched", "ended", "exit"];
        foreach (var name in order) Assert.True(marks.ContainsKey(name), $"no checkpoint '{name}' in:\n{r.Stderr}");
        for (var i = 1; i < order.Length; i++)
            Assert.True(marks[order[i - 1]] <= marks[order[i]], $"'{order[i - 1]}' after '{order[i]}':\n{r.Stderr}");
        // The seed sets no kvmactors.* key: its actor system is the one started while the guest file was read.
        Assert.True(marks.ContainsKey("early-system"), r.Stderr);
    }

    [KvmFact]
    public void Without_the_switch_run_writes_no_checkpoint()
    {
        var r = Kvmactors.Run("run");
        Assert.Equal(0, r.ExitCode);
        Assert.DoesNotContain("kvmactors-startup:", r.Stderr);
    }

    [KvmFact]
    public void A_guest_with_runtime_settings_of_its_own_runs_on_a_system_started_with_them()
    {
        // A setting the binder range-checks: out of range, the run must fail naming it, so the value reached the run.
        var bad = Kvmactors.Run("run", "--set", "kvmactors.cli.stop-grace=5m");
        Assert.Equal(2, bad.ExitCode);
        Assert.Contains("kvmactors.cli.stop-grace", bad.Stderr);
        var psi = Kvmactors.StartInfo("run", "--set", "kvmactors.cli.stop-grace=3s");
        psi.Environment["KVMACTORS_STARTUP_TRACE"] = "1";
        var r = Kvmactors.RunProcess(psi, TimeSpan.FromSeconds(60));
        Assert.Equal(0, r.ExitCode);
        Assert.Equal("4\n", r.Stdout);
        Assert.DoesNotContain("kvmactors-startup: early-system", r.Stderr);
    }
}

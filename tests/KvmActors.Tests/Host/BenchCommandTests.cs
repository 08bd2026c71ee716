using KvmActors.Tests.Support;
using Xunit;

namespace KvmActors.Tests.Host;

/// <summary>
/// <c>kvmactors bench</c> as a real process on /dev/kvm, with a tiny N: it runs both variants and prints every figure
/// the exit-path target is checked with. No figure is asserted (performance belongs in the benchmark, not in tests).
/// </summary>
public sealed class BenchCommandTests
{
    [KvmFact]
    public void A_short_bench_prints_the_ratio_handling_cpu_time_allocations_and_each_target()
    {
        var r = Kvmactors.Run(TimeSpan.FromSeconds(240), "bench", "--n", "200", "--rounds", "1", "--repeats", "1",
            "--vcpus", "2", "--startup-runs", "0", "--no-native");

        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Contains("1 rounds of 1 run(s) per variant", r.Stdout);
        Assert.Contains("at nice 19", r.Stdout);
        Assert.Contains("handling CPU µs", r.Stdout);
        Assert.Contains("alloc B/exit", r.Stdout);
        Assert.Contains("device busy", r.Stdout);
        Assert.Matches(@"out\s+x2: actors/inline \d+\.\d+ over 1 rounds; target >= 0\.95", r.Stdout);
        Assert.Matches(@"inout\s+x2: actors/inline \d+\.\d+ over 1 rounds; target >= 0\.90", r.Stdout);
        Assert.Contains("load average after the exit-path runs", r.Stdout);
    }

    [KvmFact]
    public void The_ablation_runs_every_switch_and_times_the_layers_without_kvm()
    {
        var r = Kvmactors.Run(TimeSpan.FromSeconds(300), "bench", "--ablation", "--n", "200", "--rounds", "1", "--repeats", "1",
            "--vcpus", "1", "--workloads", "inout", "--startup-runs", "0", "--no-native");

        Assert.True(r.ExitCode == 0, r.Stderr);
        foreach (var column in new[] { "pool-devices", "no-snapshot", "exit-per-msg", "no-snapshot-wait", "inline-sigmask", "before" })
            Assert.Contains(column, r.Stdout);
        Assert.Matches(@"OUT: Tell to the uart-16550 actor\s+\d+\.\d ns", r.Stdout);
        Assert.Matches(@"IN:  uart-16550 read snapshot\s+\d+\.\d ns", r.Stdout);
    }
}

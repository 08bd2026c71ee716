using System.Diagnostics;

namespace KvmActors.Host;

/// <summary>
/// Start-up checkpoints for profiling (README: "Benchmark", start-up): with <c>KVMACTORS_STARTUP_TRACE=1</c> in the
/// environment, each <see cref="Mark"/> writes one line to stderr, <c>kvmactors-startup: NAME T</c>, T being the
/// monotonic clock in nanoseconds (Stopwatch's clock on Linux, CLOCK_MONOTONIC), so a parent that read the same clock
/// before starting the process places each step from the spawn. An environment switch, not a setting: it must work
/// before any configuration is read, and costs one bool test when off.
/// </summary>
public static class StartupTrace
{
    public static readonly bool Enabled = Environment.GetEnvironmentVariable("KVMACTORS_STARTUP_TRACE") == "1";

    public static void Mark(string name)
    {
        if (!Enabled) return;
        var ns = (long)(Stopwatch.GetTimestamp() * (1e9 / Stopwatch.Frequency));
        Console.Error.WriteLine($"kvmactors-startup: {name} {ns}");
    }
}

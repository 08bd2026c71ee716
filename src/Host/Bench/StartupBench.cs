using System.Diagnostics;

namespace KvmActors.Host.Bench;

/// <summary>
/// Start-up cost, measured from outside in child processes: from just before the parent starts the process
/// to the first byte the child writes to stdout (for <c>kvmactors run</c>, the seed guest's first OUT — its
/// first exit — printed by the UART actor; for exitbench, the probe byte written right after vCPU 0's first
/// KVM_RUN returns), and to the process's exit (the whole run).
/// </summary>
public static class StartupBench
{
    public sealed record Sample(double FirstExitMs, double WholeRunMs);

    public sealed record Summary(string What, string Command, int Runs, double FirstExitMedianMs, double WholeRunMedianMs,
        double FirstExitMinMs, double WholeRunMinMs);

    /// <summary>This program, started the way this process was (apphost, or dotnet + dll).</summary>
    public static (string File, string[] Args) Self(params string[] args)
    {
        var process = Environment.ProcessPath ?? "dotnet";
        if (Path.GetFileNameWithoutExtension(process) == "dotnet")
            return (process, [typeof(StartupBench).Assembly.Location, .. args]);
        return (process, args);
    }

    public static Sample? Measure(string file, IReadOnlyList<string> args)
    {
        var psi = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        var t0 = Stopwatch.GetTimestamp();
        using var p = Process.Start(psi);
        if (p is null) return null;
        p.StandardInput.Close();
        long firstByte = 0;
        var reader = new Thread(() =>
        {
            var buffer = new byte[4096];
            var stream = p.StandardOutput.BaseStream;
            int n;
            while ((n = stream.Read(buffer, 0, buffer.Length)) > 0)
                if (firstByte == 0) firstByte = Stopwatch.GetTimestamp();
        }) { IsBackground = true };
        reader.Start();
        var stderr = p.StandardError.ReadToEndAsync();
        p.WaitForExit();
        var end = Stopwatch.GetTimestamp();
        reader.Join();
        _ = stderr.Result;
        if (p.ExitCode != 0 || firstByte == 0) return null;
        return new Sample(Stopwatch.GetElapsedTime(t0, firstByte).TotalMilliseconds, Stopwatch.GetElapsedTime(t0, end).TotalMilliseconds);
    }

    public static Summary? Summarize(string what, string command, List<Sample> samples)
    {
        if (samples.Count == 0) return null;
        return new Summary(what, command, samples.Count,
            Stats.Median(samples.Select(s => s.FirstExitMs)), Stats.Median(samples.Select(s => s.WholeRunMs)),
            samples.Min(s => s.FirstExitMs), samples.Min(s => s.WholeRunMs));
    }
}

internal static class Stats
{
    public static double Median(IEnumerable<double> values)
    {
        var v = values.Order().ToArray();
        if (v.Length == 0) return double.NaN;
        return v.Length % 2 == 1 ? v[v.Length / 2] : (v[v.Length / 2 - 1] + v[v.Length / 2]) / 2;
    }

    /// <summary>Half the range, relative to the median (a ± figure).</summary>
    public static double Spread(IReadOnlyCollection<double> values)
    {
        var m = Median(values);
        return values.Count < 2 || m == 0 ? 0 : (values.Max() - values.Min()) / 2 / m;
    }
}

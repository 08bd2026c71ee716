using System.Diagnostics;
using System.Globalization;

namespace KvmActors.Host.Bench;

/// <summary>
/// The C reference, ../shared/reference/exitbench.c, compiled with gcc into a temp folder at bench time:
/// the plain binary (exits/s per workload, for reference) and a probe build that writes one byte to stdout
/// after vCPU 0's first KVM_RUN returns (for the start-up comparison). Absent gcc or source: <see cref="Skipped"/>.
/// </summary>
public sealed class NativeReference : IDisposable
{
    private readonly string _dir;
    public string? Binary { get; }
    public string? ProbeBinary { get; }
    public string? Skipped { get; }
    public string? Source { get; }

    // The line of exitbench.c after which the probe goes (inside the vCPU loop, right after KVM_RUN).
    private const string ProbeAnchor = "if (ioctl(fd, KVM_RUN, 0) < 0) err(1, \"KVM_RUN\");";
    private const string Probe = " if (exits == 0 && id == 0 && write(1, \"!\", 1) < 0) err(1, \"probe\");";

    private NativeReference(string dir, string? source, string? binary, string? probe, string? skipped)
    {
        _dir = dir; Source = source; Binary = binary; ProbeBinary = probe; Skipped = skipped;
    }

    public static NativeReference Prepare(string? sourceOverride)
    {
        var dir = Path.Combine(Path.GetTempPath(), $"kvmactors-bench-{Environment.ProcessId}");
        var source = sourceOverride ?? FindSource();
        if (source is null || !File.Exists(source))
            return new NativeReference(dir, source, null, null, $"exitbench.c not found{(source is null ? "" : $" at {source}")} (give --exitbench PATH)");
        var gcc = FindOnPath("gcc");
        if (gcc is null) return new NativeReference(dir, source, null, null, "gcc not found on PATH");
        Directory.CreateDirectory(dir);
        var text = File.ReadAllText(source);
        var plain = Path.Combine(dir, "exitbench");
        var err = Compile(gcc, source, plain);
        if (err is not null) return new NativeReference(dir, source, null, null, $"gcc failed: {err}");
        string? probe = null;
        if (text.Contains(ProbeAnchor))
        {
            var probeSource = Path.Combine(dir, "exitbench-probe.c");
            File.WriteAllText(probeSource, "#include <unistd.h>\n" + text.Replace(ProbeAnchor, ProbeAnchor + Probe));
            probe = Path.Combine(dir, "exitbench-probe");
            if (Compile(gcc, probeSource, probe) is not null) probe = null;
        }
        return new NativeReference(dir, source, plain, probe, null);
    }

    /// <summary>exits/s as exitbench prints it (its interval includes creating the vCPUs and threads).</summary>
    public double? ExitsPerSecond(Workload workload, int vcpus, long iterations)
    {
        if (Binary is null) return null;
        var (code, stdout, _) = RunCapture(Binary, [vcpus.ToString(), iterations.ToString(), workload.Name()]);
        if (code != 0) return null;
        var field = stdout.Split(' ', StringSplitOptions.TrimEntries).FirstOrDefault(f => f.StartsWith("exits_per_s="));
        return field is not null && double.TryParse(field["exits_per_s=".Length..], NumberStyles.Float, CultureInfo.InvariantCulture, out var v) ? v : null;
    }

    private static string? FindSource()
    {
        foreach (var start in new[] { Environment.CurrentDirectory, AppContext.BaseDirectory })
            for (var d = new DirectoryInfo(start); d is not null; d = d.Parent)
            {
                var candidate = Path.Combine(d.FullName, "shared", "reference", "exitbench.c");
                if (File.Exists(candidate)) return candidate;
            }
        return null;
    }

    internal static string? FindOnPath(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
        .Select(p => Path.Combine(p, name)).FirstOrDefault(File.Exists);

    internal static string? Compile(string gcc, string source, string output)
    {
        var (code, _, stderr) = RunCapture(gcc, ["-O2", "-pthread", source, "-o", output]);
        return code == 0 ? null : stderr.Split('\n').FirstOrDefault(l => l.Length > 0) ?? $"exit status {code}";
    }

    internal static (int Code, string Stdout, string Stderr) RunCapture(string file, IEnumerable<string> args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        p.WaitForExit();
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    public void Dispose() => DeleteTempDir(_dir);

    /// <summary>Removes a bench's temp folder; one left behind (busy, or not ours to delete) is not an error.</summary>
    internal static void DeleteTempDir(string dir)
    {
        try { if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}

using System.Diagnostics;

namespace KvmActors.Host.Bench;

/// <summary>
/// Start-up cost, measured from outside in child processes: from just before the parent starts the process
/// to the first byte the child writes to stdout (for <c>kvmactors run</c> and QEMU, the seed guest's first byte
/// on COM1 — its first OUT; for exitbench, the probe byte written right after vCPU 0's first KVM_RUN returns), and
/// to the process's exit (the whole run). Issue 16's start-up target is printed beside the installed tool's figures.
/// </summary>
public static class StartupBench
{
    /// <summary>Issue 16, target 1: the installed program runs the seed guest, whole process, in at most this (median).</summary>
    public const double WholeRunTargetMs = 150;
    /// <summary>Issue 16, target 1: ... and reaches the first guest byte in at most this (median).</summary>
    public const double FirstByteTargetMs = 100;

    public sealed record Sample(double FirstExitMs, double WholeRunMs);

    public sealed record Summary(string What, string Command, int Runs, double FirstExitMedianMs, double WholeRunMedianMs,
        double FirstExitMinMs, double WholeRunMinMs);

    /// <summary>One program to start: <see cref="Skipped"/> says why not when it cannot be run here.</summary>
    public sealed record Candidate(string What, string? File, string[] Args, int ExitCode = 0, string? Skipped = null)
    {
        public string Command => string.Join(" ", [File, .. Args]);
    }

    private const string ToolWhat = "installed tool (kvmactors run)";

    /// <summary>
    /// What the start-up figure compares, in one run: the installed tool (ReadyToRun, see <see cref="FindTool"/>),
    /// this build through the dotnet host (<c>dotnet kvmactors.dll</c>), exitbench.c (the floor: a C VMM to its first
    /// exit), and QEMU where installed, as <c>-M pc</c> and <c>-M microvm</c>, each running the seed as its BIOS.
    /// </summary>
    public static List<Candidate> Candidates(NativeReference? native, string tempDir)
    {
        var (tool, toolSkipped) = FindTool(tempDir);
        var dll = typeof(StartupBench).Assembly.Location;
        var probe = native?.ProbeBinary;
        var qemu = NativeReference.FindOnPath("qemu-system-x86_64");
        return
        [
            tool is null ? new(ToolWhat, null, [], Skipped: toolSkipped) : new(ToolWhat, tool, ["run"]),
            new("dotnet kvmactors.dll run", DotnetHost(), [dll, "run"]),
            probe is null
                ? new("exitbench.c (1 vCPU, 1 OUT)", null, [], Skipped: native is null ? "--no-native" : native.Skipped ?? "probe could not be built")
                : new("exitbench.c (1 vCPU, 1 OUT)", probe, ["1", "1", "out"]),
            qemu is null
                ? new("qemu -M pc (seed as BIOS)", null, [], Skipped: "qemu-system-x86_64 not installed")
                : new("qemu -M pc (seed as BIOS)", qemu, QemuArgs(tempDir, "pc"), ExitCode: 1),
            qemu is null
                ? new("qemu -M microvm (seed as BIOS)", null, [], Skipped: "qemu-system-x86_64 not installed")
                : new("qemu -M microvm (seed as BIOS)", qemu, QemuArgs(tempDir, "microvm,x-option-roms=off,rtc=off,pit=off,pic=off"), ExitCode: 1),
        ];
    }

    /// <summary>
    /// The installed tool: <c>kvmactors</c> on PATH or in ~/.dotnet/tools; failing that, the package <c>dotnet pack</c>
    /// left in an <c>artifacts</c> folder (of the current folder or one above this program), installed for the bench
    /// alone with <c>dotnet tool install --tool-path</c> into <paramref name="tempDir"/>: the same files a global
    /// install lays out, measured without installing anything for the user.
    /// </summary>
    private static (string? Path, string? Skipped) FindTool(string tempDir)
    {
        var installed = NativeReference.FindOnPath("kvmactors")
                        ?? Existing(Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".dotnet", "tools", "kvmactors"));
        if (installed is not null) return (installed, null);
        const string howTo = "dotnet pack src/Host -c Release -o artifacts; dotnet tool install -g kvmactors --add-source ./artifacts";
        if (FindArtifacts() is not { } artifacts) return (null, $"not installed, and no artifacts/kvmactors.*.nupkg found ({howTo})");
        var toolPath = Path.Combine(tempDir, "tool");
        Console.Error.Write($"start-up: installing the packed tool from {artifacts} into a temp tool path...");
        var (code, stdout, stderr) = NativeReference.RunCapture(DotnetHost(),
            ["tool", "install", "kvmactors", "--tool-path", toolPath, "--add-source", artifacts]);
        Console.Error.Write("\r" + new string(' ', 100) + "\r");
        var command = Path.Combine(toolPath, "kvmactors");
        if (code == 0 && File.Exists(command)) return (command, null);
        var why = (stderr + stdout).Split('\n').FirstOrDefault(l => l.Trim().Length > 0)?.Trim() ?? $"exit status {code}";
        return (null, $"dotnet tool install from {artifacts} failed: {why}");
    }

    private static string? FindArtifacts()
    {
        foreach (var start in new[] { Environment.CurrentDirectory, AppContext.BaseDirectory })
            for (var d = new DirectoryInfo(start); d is not null; d = d.Parent)
            {
                var candidate = Path.Combine(d.FullName, "artifacts");
                if (Directory.Exists(candidate) && Directory.GetFiles(candidate, "kvmactors.*.nupkg").Length > 0) return candidate;
            }
        return null;
    }

    /// <summary>
    /// Runs every candidate <paramref name="runs"/> times, interleaved (the first one of each round rotates,
    /// after one unmeasured run of each for the page cache), so machine load falls on all of them alike.
    /// </summary>
    public static List<(Candidate Candidate, Summary? Summary)> MeasureAll(IReadOnlyList<Candidate> candidates, int runs)
    {
        var live = candidates.Where(c => c.Skipped is null).ToList();
        var samples = live.ToDictionary(c => c, _ => new List<Sample>());
        foreach (var c in live) Measure(c.File!, c.Args, c.ExitCode);
        for (var i = 0; i < runs; i++)
        {
            Console.Error.Write($"\rstart-up {i + 1}/{runs}...");
            for (var k = 0; k < live.Count; k++)
            {
                var c = live[(i + k) % live.Count];
                if (Measure(c.File!, c.Args, c.ExitCode) is { } s) samples[c].Add(s);
            }
        }
        Console.Error.Write("\r                    \r");
        return candidates.Select(c => (c, c.Skipped is null ? Summarize(c.What, c.Command, samples[c]) : null)).ToList();
    }

    public static void Print(List<(Candidate Candidate, Summary? Summary)> results)
    {
        Console.WriteLine();
        Console.WriteLine("start-up (child processes, interleaved; from just before the parent starts the process):");
        Console.WriteLine($"  {"",-34} {"to first guest byte",20} {"whole run",16}");
        foreach (var (c, s) in results)
        {
            if (s is not null)
                Console.WriteLine($"  {s.What,-34} {s.FirstExitMedianMs,14:F1} ms    {s.WholeRunMedianMs,10:F1} ms   (median of {s.Runs}; min {s.FirstExitMinMs:F1} / {s.WholeRunMinMs:F1} ms)");
            else
                Console.WriteLine($"  {c.What,-34} {(c.Skipped is null ? "failed: no run exited as expected" : $"skipped: {c.Skipped}")}");
        }
        if (results.FirstOrDefault(r => r.Candidate.What == ToolWhat) is { Candidate.File: { } tool }) Console.WriteLine($"  installed tool: {tool}");
        Console.WriteLine("  first guest byte = first byte on the child's stdout: the seed's first OUT to COM1 (for kvmactors, as printed");
        Console.WriteLine("  by the UART actor); for exitbench, a byte written right after vCPU 0's first KVM_RUN returns (a one-line probe");
        Console.WriteLine("  added to a temp copy); QEMU runs the same guest as a 64 KiB BIOS and ends it through isa-debug-exit");
        Console.WriteLine();
        Console.WriteLine("issue 16 start-up target (the installed tool running the seed guest, medians):");
        var t = results.FirstOrDefault(r => r.Candidate.What == ToolWhat).Summary;
        Console.WriteLine(t is null
            ? "  not measured: no installed tool (see above)"
            : $"  whole run ≤ {WholeRunTargetMs:0} ms: {t.WholeRunMedianMs:F1} ms ({Verdict(t.WholeRunMedianMs, WholeRunTargetMs)}); " +
              $"first guest byte ≤ {FirstByteTargetMs:0} ms: {t.FirstExitMedianMs:F1} ms ({Verdict(t.FirstExitMedianMs, FirstByteTargetMs)})");
    }

    private static string Verdict(double value, double target) => value <= target ? "met" : $"not met, {value / target:F1}x";

    /// <summary>
    /// QEMU running the seed's equivalent as a 64 KiB BIOS: at the reset vector, print "4\n" on COM1, then
    /// end through isa-debug-exit (QEMU exits 1). No firmware or kernel to find. For microvm, the devices it would
    /// add on its own (option ROMs, RTC, PIT, PIC) are off: the seed needs only its serial port.
    /// </summary>
    private static string[] QemuArgs(string tempDir, string machine)
    {
        Directory.CreateDirectory(tempDir);
        var bios = Path.Combine(tempDir, "seed-bios.bin");
        var image = new byte[64 * 1024];
        // mov dx,0x3f8; mov al,'4'; out dx,al; mov al,10; out dx,al; mov dx,0xf4; mov al,0; out dx,al; hlt
        byte[] code = [0xba, 0xf8, 0x03, 0xb0, 0x34, 0xee, 0xb0, 0x0a, 0xee, 0xba, 0xf4, 0x00, 0xb0, 0x00, 0xee, 0xf4];
        code.CopyTo(image, image.Length - 16);
        File.WriteAllBytes(bios, image);
        return ["-M", machine, "-accel", "kvm", "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=1", "-bios", bios];
    }

    private static string? Existing(string path) => File.Exists(path) ? path : null;

    private static string DotnetHost() =>
        Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host && File.Exists(host) ? host
        : Path.GetFileNameWithoutExtension(Environment.ProcessPath) == "dotnet" ? Environment.ProcessPath! : "dotnet";

    public static Sample? Measure(string file, IReadOnlyList<string> args, int expectedExit = 0)
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
        if (p.ExitCode != expectedExit || firstByte == 0) return null;
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

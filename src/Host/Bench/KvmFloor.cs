using System.Globalization;

namespace KvmActors.Host.Bench;

/// <summary>
/// KVM's own floor for the density guest's VM shape (irqchip + PIT, 64 KiB, one vCPU): <c>kvm-floor.c</c>, embedded
/// in this program and compiled with gcc at bench time, does only the ioctls from <c>open("/dev/kvm")</c> to the
/// first exit (create) and the closes after it (teardown), in a loop. Absent gcc: <see cref="Skipped"/>.
/// </summary>
public sealed class KvmFloor : IDisposable
{
    private readonly string _dir;
    public string? Binary { get; }
    public string? Skipped { get; }

    private KvmFloor(string dir, string? binary, string? skipped)
    {
        _dir = dir; Binary = binary; Skipped = skipped;
    }

    public static KvmFloor Prepare()
    {
        var dir = Path.Combine(Path.GetTempPath(), $"kvmactors-floor-{Environment.ProcessId}");
        var gcc = NativeReference.FindOnPath("gcc");
        if (gcc is null) return new KvmFloor(dir, null, "gcc not found on PATH");
        Directory.CreateDirectory(dir);
        var source = Path.Combine(dir, "kvm-floor.c");
        using (var from = typeof(KvmFloor).Assembly.GetManifestResourceStream("KvmActors.Host.Bench.kvm-floor.c")!)
        using (var to = File.Create(source))
            from.CopyTo(to);
        var binary = Path.Combine(dir, "kvm-floor");
        return NativeReference.Compile(gcc, source, binary) is { } err
            ? new KvmFloor(dir, null, $"gcc failed: {err}")
            : new KvmFloor(dir, binary, null);
    }

    /// <summary>Medians over <paramref name="runs"/> VMs made one after another (null when it could not run).</summary>
    /// <param name="memoryFirst">Memory slots before the irqchip (the runtime's order), else after it.</param>
    public (double CreateP50, double TeardownP50)? Measure(int runs, bool memoryFirst)
    {
        if (Binary is null) return null;
        var (code, stdout, _) = NativeReference.RunCapture(Binary, [runs.ToString(CultureInfo.InvariantCulture), memoryFirst ? "1" : "0"]);
        if (code != 0) return null;
        var create = new List<double>();
        var teardown = new List<double>();
        foreach (var line in stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries))
            foreach (var field in line.Split(' '))
                if (field.Split('=') is [var key, var value] && double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var v))
                    (key == "create_ms" ? create : teardown).Add(v);
        return create.Count == 0 ? null : (Stats.Median(create), Stats.Median(teardown));
    }

    public void Dispose() => NativeReference.DeleteTempDir(_dir);
}

using Xunit;

namespace KvmActors.Tests.Gdb;

/// <summary>
/// A test that drives the real gdb. Outside CI it is skipped, with the reason, where no gdb is
/// installed; under CI=true it always runs, so a missing gdb fails instead of hiding.
/// </summary>
public sealed class GdbFactAttribute : FactAttribute
{
    public GdbFactAttribute()
    {
        if (GdbAvailability.SkipReason is { } why) Skip = why;
    }
}

/// <summary>The theory counterpart of <see cref="GdbFactAttribute"/>.</summary>
public sealed class GdbTheoryAttribute : TheoryAttribute
{
    public GdbTheoryAttribute()
    {
        if (GdbAvailability.SkipReason is { } why) Skip = why;
    }
}

internal static class GdbAvailability
{
    /// <summary>/usr/bin/gdb, else the first gdb on PATH, else /usr/bin/gdb (so the test fails naming it).</summary>
    public static string Path { get; } = Find() ?? "/usr/bin/gdb";

    private static string? Find()
    {
        if (File.Exists("/usr/bin/gdb")) return "/usr/bin/gdb";
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            var candidate = System.IO.Path.Combine(dir, "gdb");
            if (File.Exists(candidate)) return candidate;
        }
        return null;
    }

    private static readonly Lazy<string?> Reason = new(() =>
    {
        if (KvmAvailability.UnderCi) return null;
        return Find() is null ? "gdb is not installed; gdb tests run only where it is (and always under CI=true)" : null;
    });

    public static string? SkipReason => Reason.Value;
}

using KvmActors.Runtime.Kvm;
using Xunit;

namespace KvmActors.Tests;

/// <summary>
/// A test that needs a working /dev/kvm. Outside CI it is skipped, with the reason, where /dev/kvm
/// cannot be opened; under CI=true it always runs, so a missing /dev/kvm fails instead of hiding.
/// </summary>
public sealed class KvmFactAttribute : FactAttribute
{
    public KvmFactAttribute()
    {
        if (KvmAvailability.SkipReason is { } why) Skip = why;
    }
}

/// <summary>The theory counterpart of <see cref="KvmFactAttribute"/>.</summary>
public sealed class KvmTheoryAttribute : TheoryAttribute
{
    public KvmTheoryAttribute()
    {
        if (KvmAvailability.SkipReason is { } why) Skip = why;
    }
}

internal static class KvmAvailability
{
    public static bool UnderCi => string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase);

    private static readonly Lazy<string?> Reason = new(() =>
    {
        if (UnderCi) return null;
        var why = KvmSystem.Unavailable();
        return why is null ? null : $"/dev/kvm is not usable here ({why}); KVM tests run only where it is (and always under CI=true)";
    });

    public static string? SkipReason => Reason.Value;
}

using System.Text.RegularExpressions;

namespace KvmActors.Runtime.Config;

/// <summary>Binds <c>guest.expect</c> (what <c>kvmactors test</c> checks) onto <see cref="GuestExpectation"/>.</summary>
internal static class ExpectConfig
{
    /// <summary>The longest per-guest timeout, as for <c>run --timeout</c> (timers take at most about 49 days).</summary>
    private static readonly TimeSpan MaxTimeout = TimeSpan.FromDays(30);

    public static GuestExpectation Bind(ConfigSection c)
    {
        // 0..255: what a process can exit with, and so what `kvmactors run` of the same guest would return.
        var status = (int)c.GetInteger("status", 0, max: 255);
        var contains = c.GetStringOrList("output-contains");
        if (contains.Any(s => s.Length == 0)) throw c.Error("output-contains", "an empty string is contained in any output: leave it out");
        Regex? matches = null;
        if (c.GetString("output-matches", "", whenNull: "") is { Length: > 0 } pattern)
        {
            try { matches = new Regex(pattern, RegexOptions.Multiline | RegexOptions.CultureInvariant, GuestExpectation.MatchTimeout); }
            catch (ArgumentException e) { throw c.Error("output-matches", $"not a regular expression (.NET syntax): {e.Message}"); }
        }
        TimeSpan? timeout = c.GetString("timeout", "", whenNull: "") is { Length: > 0 }
            ? c.GetDuration("timeout", min: TimeSpan.FromMilliseconds(1), max: MaxTimeout)
            : null;
        return new GuestExpectation(status, contains, matches, timeout);
    }
}

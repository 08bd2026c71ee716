using System.Text.RegularExpressions;

namespace KvmActors.Runtime.Config;

/// <summary>
/// What a guest is expected to do when <c>kvmactors test</c> runs it (<c>guest.expect</c>): end with
/// <see cref="Status"/>, and have its console output contain every string of <see cref="OutputContains"/> and
/// match <see cref="OutputMatches"/>, within <see cref="Timeout"/> (null: the runner's default).
/// <c>kvmactors run</c> and <c>serve</c> check the block but do not act on it.
/// </summary>
public sealed record GuestExpectation(int Status, IReadOnlyList<string> OutputContains, Regex? OutputMatches, TimeSpan? Timeout)
{
    public static readonly GuestExpectation Default = new(0, [], null, null);

    /// <summary>How long one match of <see cref="OutputMatches"/> may take: a pattern that backtracks without end fails the test instead.</summary>
    public static readonly TimeSpan MatchTimeout = TimeSpan.FromSeconds(1);
}

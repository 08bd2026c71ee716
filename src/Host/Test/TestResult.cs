using System.Text.RegularExpressions;
using KvmActors.Runtime.Config;

namespace KvmActors.Host.Test;

public enum TestVerdict { Passed, Failed, NotRun }

/// <summary>Why a guest failed its test: <see cref="Kind"/> is one of <see cref="TestFailure"/>'s constants (JUnit's failure type).</summary>
public sealed record TestFailure(string Kind, string Message)
{
    public const string Status = "status", Output = "output", Timeout = "timeout", Config = "config", Interrupted = "interrupted", Stuck = "stuck";
}

/// <summary>One guest file's test, as the summary, the TAP stream and the JUnit file report it.</summary>
/// <param name="Number">Its place on the command line, from 1 (the TAP test number).</param>
/// <param name="Output">The console output kept (the last <c>kvmactors.test.output-kept</c> bytes), as text.</param>
/// <param name="OutputTotal">Every byte the guest wrote to its console: more than <paramref name="Output"/> holds when the ring dropped some.</param>
public sealed record TestResult(
    int Number, string File, string GuestName, TestVerdict Verdict, IReadOnlyList<TestFailure> Failures,
    int? Status, int ExpectedStatus, TimeSpan Time, string Output = "", long OutputTotal = 0, string? End = null)
{
    public bool OutputTruncated => OutputTotal > System.Text.Encoding.UTF8.GetByteCount(Output);

    /// <summary>The first failure's message, or the reason it did not run.</summary>
    public string Reason => Failures.Count > 0 ? string.Join("; ", Failures.Select(f => f.Message)) : "";
}

/// <summary>The checks of <c>guest.expect</c> against how a guest ended and what it wrote.</summary>
public static class Expectations
{
    /// <param name="status">The exit status <c>kvmactors run</c> would have returned for this end.</param>
    /// <param name="timedOut">The runner stopped the guest at its timeout (then the status is 124).</param>
    /// <param name="truncated">The output is only the last part of what the guest wrote.</param>
    public static IReadOnlyList<TestFailure> Check(GuestExpectation expect, int status, string endDetail, string output, bool truncated,
        TimeSpan timeout, bool timedOut)
    {
        var failures = new List<TestFailure>();
        if (timedOut && expect.Status != ExitCodes.Timeout)
            failures.Add(new(TestFailure.Timeout, $"timeout: still running after {Duration(timeout)} (status 124, expected {expect.Status})"));
        else if (status != expect.Status)
            failures.Add(new(TestFailure.Status, $"exit status {status}, expected {expect.Status} ({endDetail})"));
        var kept = truncated ? " (in the output kept: its last part)" : "";
        foreach (var s in expect.OutputContains.Where(s => !output.Contains(s, StringComparison.Ordinal)))
            failures.Add(new(TestFailure.Output, $"output does not contain \"{Shown(s)}\"{kept}"));
        if (expect.OutputMatches is { } regex)
        {
            try
            {
                if (!regex.IsMatch(output)) failures.Add(new(TestFailure.Output, $"output does not match /{Shown(regex.ToString())}/{kept}"));
            }
            catch (RegexMatchTimeoutException)
            {
                failures.Add(new(TestFailure.Output, $"output-matches /{Shown(regex.ToString())}/ took longer than {Duration(GuestExpectation.MatchTimeout)} to match"));
            }
        }
        return failures;
    }

    public static string Duration(TimeSpan t) =>
        t.TotalSeconds < 1 ? $"{t.TotalMilliseconds:0}ms" : $"{t.TotalSeconds.ToString("0.###", System.Globalization.CultureInfo.InvariantCulture)}s";

    /// <summary>A string as one line, control characters escaped, for failure messages.</summary>
    /// <param name="quotes">Escape <c>"</c> and <c>\</c> too (for a string shown between double quotes).</param>
    public static string Shown(string s, bool quotes = true) => string.Concat(s.Select(c => c switch
    {
        '\n' => "\\n", '\r' => "\\r", '\t' => "\\t",
        '"' when quotes => "\\\"",
        '\\' when quotes => "\\\\",
        < ' ' or '\x7f' => $"\\x{(int)c:x2}",
        _ => c.ToString(),
    }));
}

namespace KvmActors.Host.Test;

/// <summary>
/// The runner's stderr: one line per guest as it ends (PASS/FAIL, time, the reason), and on a terminal a status line
/// below them naming the guests still running; then the summary table and the totals.
/// </summary>
public sealed class SuiteProgress(TextWriter stderr, int count, bool terminal)
{
    private readonly object _gate = new();
    private readonly SortedDictionary<int, string> _running = new();
    private int _done;

    public void Started(int number, string file)
    {
        lock (_gate)
        {
            _running[number] = file;
            Status();
        }
    }

    public void Ended(TestResult r)
    {
        lock (_gate)
        {
            _running.Remove(r.Number);
            _done++;
            var width = count.ToString().Length;
            Line($"kvmactors test: [{_done.ToString().PadLeft(width)}/{count}] {Verdict(r)} {r.File} ({Expectations.Duration(r.Time)})" +
                 (r.Verdict == TestVerdict.Passed ? "" : $": {r.Reason}"));
            Status();
        }
    }

    /// <summary>The table of every guest in command-line order, then one line of totals.</summary>
    public void Summary(IReadOnlyList<TestResult> results, TimeSpan wall, int jobs)
    {
        lock (_gate)
        {
            Clear();
            var rows = results.Select(r => new[]
            {
                Verdict(r), Expectations.Duration(r.Time), r.Status?.ToString() ?? "-", r.ExpectedStatus.ToString(), r.File,
                r.Verdict == TestVerdict.Passed ? "" : r.Reason,
            }).Prepend(["RESULT", "TIME", "STATUS", "EXPECTED", "GUEST", "REASON"]).ToList();
            var widths = Enumerable.Range(0, 5).Select(i => rows.Max(row => row[i].Length)).ToArray();
            foreach (var row in rows)
                stderr.WriteLine((string.Join("  ", row.Take(5).Select((cell, i) => cell.PadRight(widths[i]))) + "  " + row[5]).TrimEnd());
            var passed = results.Count(r => r.Verdict == TestVerdict.Passed);
            var failed = results.Count(r => r.Verdict == TestVerdict.Failed);
            var notRun = results.Count(r => r.Verdict == TestVerdict.NotRun);
            stderr.WriteLine($"kvmactors test: {results.Count} guest(s): {passed} passed, {failed} failed" +
                             (notRun > 0 ? $", {notRun} not run" : "") + $" in {Expectations.Duration(wall)} (--jobs {jobs})");
        }
    }

    private static string Verdict(TestResult r) => r.Verdict switch { TestVerdict.Passed => "PASS", TestVerdict.Failed => "FAIL", _ => "SKIP" };

    private void Line(string text)
    {
        Clear();
        stderr.WriteLine(text);
    }

    // On a terminal the last line names what still runs; it is rewritten in place (\r, erase to the end of the line).
    private void Status()
    {
        if (!terminal || _running.Count == 0) return;
        var names = string.Join(", ", _running.Values.Take(4)) + (_running.Count > 4 ? ", ..." : "");
        stderr.Write($"\rrunning {_running.Count}: {names}");
    }

    private void Clear()
    {
        if (terminal) stderr.Write("\r\x1b[K");
    }
}

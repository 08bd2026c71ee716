namespace KvmActors.Host.Test;

/// <summary>
/// The suite as TAP version 13 on stdout: the plan first, then <c>ok N - FILE</c> / <c>not ok N - FILE</c> in command-line
/// order (a result waits for the ones before it), each failure with a YAML block (message, status, expected,
/// duration_ms); a guest that never ran is <c>ok N - FILE # SKIP not run: WHY</c>. A reader gone from stdout ends the
/// stream (the runner stops, 141), never the process.
/// </summary>
public sealed class TapStream
{
    private readonly TextWriter _out;
    private readonly TestResult?[] _results;
    private int _next;
    private bool _broken;

    public TapStream(TextWriter output, int count)
    {
        _out = output;
        _results = new TestResult?[count];
        Write($"TAP version 13\n1..{count}\n");
    }

    /// <summary>Records a result and writes every one now in order.</summary>
    public void Add(TestResult r)
    {
        lock (_results)
        {
            _results[r.Number - 1] = r;
            var text = new System.Text.StringBuilder();
            while (_next < _results.Length && _results[_next] is { } ready)
            {
                text.Append(Line(ready));
                _next++;
            }
            if (text.Length > 0) Write(text.ToString());
        }
    }

    public static string Line(TestResult r)
    {
        var name = $"{r.Number} - {Escape(r.File)}";
        return r.Verdict switch
        {
            TestVerdict.Passed => $"ok {name}\n",
            TestVerdict.NotRun => $"ok {name} # SKIP {Escape(r.Reason)}\n",
            _ => $"not ok {name}\n  ---\n" +
                 $"  message: {Yaml(r.Reason)}\n" +
                 $"  failures: [{string.Join(", ", r.Failures.Select(f => f.Kind).Distinct())}]\n" +
                 (r.Status is { } s ? $"  status: {s}\n" : "") +
                 $"  expected: {r.ExpectedStatus}\n" +
                 $"  duration_ms: {r.Time.TotalMilliseconds:0}\n  ...\n",
        };
    }

    // TAP: a '#' in the description starts a directive; a newline would end the line.
    private static string Escape(string s) => Expectations.Shown(s, quotes: false).Replace("#", "\\#");

    private static string Yaml(string s) => $"'{Expectations.Shown(s, quotes: false).Replace("'", "''")}'";

    private void Write(string text)
    {
        if (_broken) return;
        try
        {
            _out.Write(text);
            _out.Flush();
        }
        catch (IOException) { _broken = true; }
    }
}

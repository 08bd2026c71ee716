using System.Globalization;
using System.Text;
using System.Xml;
using System.Xml.Linq;

namespace KvmActors.Host.Test;

/// <summary>
/// The suite as JUnit XML: <c>&lt;testsuites&gt;</c> holding one <c>&lt;testsuite&gt;</c> with a <c>&lt;testcase&gt;</c> per
/// guest file (its path as given, the guest's name as the class, its time), a <c>&lt;failure&gt;</c> per reason it failed
/// (type: status, output, timeout, config, interrupted, stuck), <c>&lt;skipped&gt;</c> for a guest that never ran, and
/// the output kept in <c>&lt;system-out&gt;</c>. Guest bytes that XML 1.0 cannot carry are written as <c>\xNN</c>.
/// </summary>
public static class JUnitReport
{
    public const string SuiteName = "kvmactors test";

    public static XDocument Build(IReadOnlyList<TestResult> results, TimeSpan wall, DateTimeOffset started)
    {
        var failed = results.Count(r => r.Verdict == TestVerdict.Failed);
        var skipped = results.Count(r => r.Verdict == TestVerdict.NotRun);
        var suite = new XElement("testsuite",
            new XAttribute("name", SuiteName),
            new XAttribute("tests", results.Count),
            new XAttribute("failures", failed),
            new XAttribute("errors", 0),
            new XAttribute("skipped", skipped),
            new XAttribute("time", Seconds(wall)),
            new XAttribute("timestamp", started.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ss", CultureInfo.InvariantCulture)),
            new XAttribute("hostname", Safe(Environment.MachineName)),
            results.Select(Case));
        return new XDocument(new XDeclaration("1.0", "utf-8", null),
            new XElement("testsuites",
                new XAttribute("name", SuiteName), new XAttribute("tests", results.Count), new XAttribute("failures", failed),
                new XAttribute("errors", 0), new XAttribute("skipped", skipped), new XAttribute("time", Seconds(wall)),
                suite));
    }

    private static XElement Case(TestResult r)
    {
        var c = new XElement("testcase",
            new XAttribute("name", Safe(r.File)),
            // A guest file that could not be loaded has no guest name: the class is then the runner's.
            new XAttribute("classname", Safe(r.GuestName.Length > 0 ? r.GuestName : "kvmactors")),
            new XAttribute("file", Safe(r.File)),
            new XAttribute("time", Seconds(r.Time)));
        if (r.Verdict == TestVerdict.NotRun)
            c.Add(new XElement("skipped", new XAttribute("message", Safe(r.Reason))));
        foreach (var f in r.Verdict == TestVerdict.Failed ? r.Failures : [])
            c.Add(new XElement("failure", new XAttribute("message", Safe(f.Message)), new XAttribute("type", f.Kind),
                Safe(Details(r, f))));
        if (r.Output.Length > 0 || r.OutputTotal > 0)
            c.Add(new XElement("system-out", Safe(
                (r.OutputTruncated ? $"[kvmactors: the guest wrote {r.OutputTotal} bytes; these are the last ones kept]\n" : "") + r.Output)));
        return c;
    }

    private static string Details(TestResult r, TestFailure f)
    {
        var text = new StringBuilder(f.Message).Append('\n');
        if (r.Status is { } s) text.Append($"exit status: {s} (expected {r.ExpectedStatus})\n");
        if (r.End is { } end) text.Append($"end: {end}\n");
        return text.ToString();
    }

    /// <summary>Writes the document (UTF-8, no BOM); an IOException or a refused path is the caller's to report.</summary>
    public static void Write(string path, XDocument doc)
    {
        using var writer = XmlWriter.Create(path, new XmlWriterSettings { Indent = true, Encoding = new UTF8Encoding(false) });
        doc.Save(writer);
    }

    /// <summary>Text XML 1.0 can carry: other control characters, U+FFFE/U+FFFF and lone surrogates as <c>\xNN</c>/<c>\uNNNN</c>.</summary>
    public static string Safe(string s)
    {
        if (s.All(XmlConvert.IsXmlChar)) return s;
        var b = new StringBuilder(s.Length + 16);
        for (var i = 0; i < s.Length; i++)
        {
            var c = s[i];
            if (XmlConvert.IsXmlChar(c)) b.Append(c);
            else if (char.IsHighSurrogate(c) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1])) b.Append(c).Append(s[++i]);
            else b.Append(c < 0x100 ? $"\\x{(int)c:x2}" : $"\\u{(int)c:x4}");
        }
        return b.ToString();
    }

    private static string Seconds(TimeSpan t) => t.TotalSeconds.ToString("0.000", CultureInfo.InvariantCulture);
}

using Akka.Configuration;
using Akka.Configuration.Hocon;

namespace KvmActors.Runtime.Config;

/// <summary>
/// Parses HOCON text that may be hostile. Akka's parser and its accessors recurse: text nested thousands of
/// levels deep, or a substitution that refers to itself (<c>a = ${a}</c>, even HOCON's <c>x = ${x} [1]</c>,
/// which Akka does not support) overflows the stack, which cannot be caught. So the nesting (depth, balance, and
/// constructs Akka's parser loops on) is checked on the raw text first, the parse runs on a thread with a bounded stack of its own, and the parsed tree is checked
/// for substitution cycles (and substitutions that expand beyond a bound) before anyone reads a value.
/// </summary>
public static class HoconText
{
    /// <summary>Deeper than any real config (the guest schema is 6 levels deep), far below what 16 MiB of stack parses.</summary>
    public const int MaxDepth = 64;
    /// <summary>How many values a file may expand to once substitutions are followed (catches ${a}${a} doubling).</summary>
    public const long MaxExpandedValues = 1_000_000;
    public const int MaxIncludeDepth = 8;
    public const ulong MaxFileBytes = 4 << 20;
    private const int ParserStackBytes = 16 << 20;
    private static readonly TimeSpan ParseBound = TimeSpan.FromSeconds(10);

    /// <summary>The parsed config, or a ConfigException naming <paramref name="source"/>.</summary>
    /// <param name="baseDirectory">Where <c>include "x.conf"</c> looks (the config file's folder).</param>
    public static Akka.Configuration.Config Parse(string text, string source, string baseDirectory) =>
        Parse(text, source, baseDirectory, 0);

    private static Akka.Configuration.Config Parse(string text, string source, string baseDirectory, int includeDepth)
    {
        CheckStructure(text, source);
        Akka.Configuration.Config? result = null;
        Exception? failure = null;
        void Work()
        {
            try
            {
                result = ConfigurationFactory.ParseString(text, name => Include(name, source, baseDirectory, includeDepth));
                CheckSubstitutions(result.Root, source);
            }
            catch (Exception e) { failure = e; }
        }
        if (!ParserThread.TryRun(Work, ParseBound, out var finished))
        {
            // The parser thread is busy (another parse, or an include inside one): a thread of its own, as before.
            var thread = new Thread(Work, ParserStackBytes) { IsBackground = true, Name = "hocon-parse" };
            thread.Start();
            finished = thread.Join(ParseBound);
        }
        if (!finished) throw new ConfigException(source, "(syntax)", $"parsing took longer than {ParseBound.TotalSeconds:0} s");
        return failure switch
        {
            null => result!,
            ConfigException c => throw c,
            _ => throw new ConfigException(source, "(syntax)", FirstLine(failure.Message), failure),
        };
    }

    /// <summary>
    /// One long-lived thread with the parser's bounded stack, so a parse does not start a thread (two per posted
    /// guest, 0.2-0.7 ms each on a loaded host: bench density). One parse at a time; a caller that finds it busy
    /// starts a thread of its own, so a slow hostile text never delays another's parse. A parse that overruns its
    /// bound leaves that thread to it (as a thread of its own was left before) and the next parse gets a new one.
    /// </summary>
    private sealed class ParserThread
    {
        private static ParserThread? _current;
        private static readonly object Gate = new();

        private readonly SemaphoreSlim _work = new(0);
        private readonly SemaphoreSlim _done = new(0);
        private Action? _job;
        private int _busy;

        private ParserThread()
        {
            new Thread(Loop, ParserStackBytes) { IsBackground = true, Name = "hocon-parse" }.Start();
        }

        private void Loop()
        {
            while (true)
            {
                _work.Wait();
                _job!();
                _job = null;
                _done.Release();
            }
        }

        /// <summary>Runs <paramref name="job"/> on the parser thread; false when it is busy (nothing ran).</summary>
        public static bool TryRun(Action job, TimeSpan bound, out bool finished)
        {
            finished = false;
            ParserThread parser;
            lock (Gate) parser = _current ??= new ParserThread();
            if (Interlocked.CompareExchange(ref parser._busy, 1, 0) != 0) return false;
            parser._job = job;
            parser._work.Release();
            finished = parser._done.Wait(bound);
            if (finished) Volatile.Write(ref parser._busy, 0);
            else lock (Gate) if (_current == parser) _current = null; // stays busy: stuck with that text
            return true;
        }
    }

    private static HoconRoot Include(string name, string source, string baseDirectory, int depth)
    {
        ConfigException Error(string problem) => new(source, $"include \"{name}\"", problem);
        if (depth >= MaxIncludeDepth) throw Error($"includes nest deeper than {MaxIncludeDepth} levels (an include cycle?)");
        var path = Path.Combine(baseDirectory, name);
        var bytes = ConfigFiles.Read(path, name, MaxFileBytes, "an included file", Error);
        var included = Parse(System.Text.Encoding.UTF8.GetString(bytes), path, Path.GetDirectoryName(Path.GetFullPath(path))!, depth + 1);
        return new HoconRoot(included.Root);
    }

    /// <summary>
    /// Nesting of { and [ outside strings and comments: bounded, balanced, and no <c>=</c>, <c>:</c> or <c>}</c>
    /// directly inside a list, on which Akka's parser loops forever (<c>a = [ b = 1 ]</c>, or <c>a = [</c> followed
    /// by more keys, as a truncated file has).
    /// </summary>
    private static void CheckStructure(string text, string source)
    {
        var open = new Stack<(char Bracket, int Line)>();
        var line = 1;
        ConfigException Error(string problem) => new(source, "(syntax)", $"line {line}: {problem}");
        for (var i = 0; i < text.Length; i++)
        {
            var c = text[i];
            switch (c)
            {
                case '\n': line++; break;
                case '#':
                case '/' when i + 1 < text.Length && text[i + 1] == '/':
                    while (i + 1 < text.Length && text[i + 1] != '\n') i++;
                    break;
                case '"' when i + 2 < text.Length && text[i + 1] == '"' && text[i + 2] == '"':
                    var end = text.IndexOf("\"\"\"", i + 3, StringComparison.Ordinal);
                    if (end < 0) return; // the parser reports the unterminated string
                    line += text.AsSpan(i, end - i).Count('\n');
                    i = end + 2;
                    break;
                case '"':
                    for (i++; i < text.Length && text[i] != '"' && text[i] != '\n'; i++)
                        if (text[i] == '\\') i++;
                    break;
                case '{' or '[':
                    open.Push((c, line));
                    if (open.Count > MaxDepth) throw Error($"nested deeper than {MaxDepth} levels");
                    break;
                case '}' or ']':
                    var expected = c == '}' ? '{' : '[';
                    if (open.Count == 0 || open.Peek().Bracket != expected)
                        throw Error(open.Count == 0 ? $"'{c}' closes nothing" : $"'{c}' cannot close the '{open.Peek().Bracket}' of line {open.Peek().Line}");
                    open.Pop();
                    break;
                case '=' or ':' when open.Count > 0 && open.Peek().Bracket == '[':
                    if (c == ':' && i + 1 < text.Length && text[i + 1] == '/') break; // an unquoted URL-like word
                    throw Error($"'{c}' inside the list opened on line {open.Peek().Line} (a missing ']'?)");
            }
        }
        if (open.Count > 0) throw Error($"the '{open.Peek().Bracket}' of line {open.Peek().Line} is never closed");
    }

    /// <summary>
    /// Depth-first over values, following substitutions to what they resolved to, without recursion: a value met
    /// again while it is still being expanded is a cycle; the count of values reached (with repeats) is bounded.
    /// </summary>
    private static void CheckSubstitutions(HoconValue root, string source)
    {
        var expanded = new Dictionary<HoconValue, long>(ReferenceEqualityComparer.Instance);
        var onPath = new HashSet<HoconValue>(ReferenceEqualityComparer.Instance);
        var stack = new Stack<(HoconValue Value, string Key, List<HoconValue>? Children, int Next, long Size)>();
        stack.Push((root, "", null, 0, 1));
        onPath.Add(root);
        while (stack.Count > 0)
        {
            var (value, key, children, next, size) = stack.Pop();
            children ??= Children(value, key, source);
            if (next < children.Count)
            {
                var child = children[next];
                stack.Push((value, key, children, next + 1, size));
                if (expanded.TryGetValue(child, out var known))
                {
                    var (v, k, ch, nx, sz) = stack.Pop();
                    stack.Push((v, k, ch, nx, Add(sz, known, key, source)));
                    continue;
                }
                var childKey = KeyOf(value, child, key);
                if (!onPath.Add(child))
                    throw new ConfigException(source, childKey.Length == 0 ? "(substitution)" : childKey,
                        "a substitution refers back to itself (a cycle): it can never be resolved");
                stack.Push((child, childKey, null, 0, 1));
                continue;
            }
            onPath.Remove(value);
            expanded[value] = size;
            if (stack.Count > 0)
            {
                var (v, k, ch, nx, sz) = stack.Pop();
                stack.Push((v, k, ch, nx, Add(sz, size, key, source)));
            }
        }
    }

    private static long Add(long a, long b, string key, string source) =>
        a + b <= MaxExpandedValues ? a + b
            : throw new ConfigException(source, key.Length == 0 ? "(substitution)" : key, $"substitutions expand to more than {MaxExpandedValues} values");

    private static List<HoconValue> Children(HoconValue value, string key, string source)
    {
        var list = new List<HoconValue>();
        foreach (var element in value.Values)
            switch (element)
            {
                case HoconObject o: list.AddRange(o.Items.Values); break;
                case HoconArray a: list.AddRange(a); break;
                case HoconSubstitution s when s.ResolvedValue is { } resolved: list.Add(resolved); break;
            }
        return list;
    }

    private static string KeyOf(HoconValue parent, HoconValue child, string parentKey)
    {
        foreach (var element in parent.Values)
            if (element is HoconObject o)
                foreach (var (k, v) in o.Items)
                    if (ReferenceEquals(v, child)) return parentKey.Length == 0 ? k : $"{parentKey}.{k}";
        return parentKey;
    }

    private static string FirstLine(string s) => s.Split('\n')[0].Trim();
}

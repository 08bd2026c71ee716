using Akka.Configuration.Hocon;

namespace KvmActors.Sdk;

/// <summary>
/// One HOCON object of a KvmActors config (<c>guest</c>, <c>guest.memory[0]</c>, <c>guest.devices.com1.options</c>,
/// <c>kvmactors</c>) with the typed readers every section uses. Every error, of value or of shape (a list where a
/// value is expected, a scalar where an object is, a HOCON <c>null</c>), is a <see cref="ConfigException"/> naming
/// the full key and where the value came from: the file, or <c>--set</c> for a key an override gave.
/// </summary>
public sealed class ConfigSection
{
    private readonly Akka.Configuration.Config _config;
    private readonly Func<string, string> _sourceOf;

    /// <param name="config">The object's contents (null: an empty object).</param>
    /// <param name="path">Its full key, e.g. <c>guest.devices.com1.options</c> ("" for the top level).</param>
    /// <param name="file">The config file, named in errors.</param>
    /// <param name="baseDirectory">Folder of the config file, for values that are paths relative to it.</param>
    /// <param name="sourceOf">Which source (file or <c>--set</c>) gave a full key; by default always <paramref name="file"/>.</param>
    public ConfigSection(Akka.Configuration.Config? config, string path, string file, string baseDirectory, Func<string, string>? sourceOf = null)
    {
        _config = config ?? Akka.Configuration.Config.Empty;
        Path = path;
        File = file;
        BaseDirectory = baseDirectory;
        _sourceOf = sourceOf ?? (_ => file);
    }

    public string Path { get; }
    public string File { get; }
    public string BaseDirectory { get; }

    /// <summary>The full key of <paramref name="key"/> in this section, as errors name it.</summary>
    public string FullKey(string key) => Path.Length == 0 ? key : key.StartsWith('[') ? Path + key : $"{Path}.{key}";

    /// <summary>An error naming the full key and its source (the file, or --set).</summary>
    public ConfigException Error(string key, string problem) => new(_sourceOf(FullKey(key)), FullKey(key), problem);

    /// <summary>An error about this section as a whole.</summary>
    public ConfigException Error(string problem) => new(_sourceOf(Path), Path, problem);

    /// <summary>The keys present in this object.</summary>
    public IReadOnlyList<string> Keys =>
        _config.IsEmpty || _config.Root is not { } root || !root.IsObject() ? [] : root.GetObject().Items.Keys.ToList();

    /// <summary>The key is present (even as a HOCON <c>null</c>).</summary>
    public bool Has(string key) => Value(key) is not null;

    /// <summary>
    /// The key is present and holds a HOCON <c>null</c>. Akka's HOCON parser reads a quoted <c>"null"</c>
    /// the same way, so the two cannot be told apart.
    /// </summary>
    public bool IsNull(string key) => Value(key) is { } v && IsNullValue(v);

    /// <summary>Throws for the first key not in <paramref name="known"/>.</summary>
    public void RejectUnknown(params string[] known)
    {
        foreach (var k in Keys)
            if (!known.Contains(k))
                throw Error(k, known.Length == 0 ? "unknown option (this device takes none)" : $"unknown option (known: {string.Join(", ", known)})");
    }

    /// <summary>
    /// The text of a scalar; <paramref name="fallback"/> when the key is missing (an error without one).
    /// A HOCON <c>null</c> is an error unless <paramref name="whenNull"/> says what it means.
    /// </summary>
    public string GetString(string key, string? fallback = null, string? whenNull = null) =>
        Text(key, whenNull) ?? fallback ?? throw Missing(key);

    /// <summary>true/yes/on or false/no/off.</summary>
    public bool GetBool(string key, bool? fallback = null)
    {
        if (Text(key) is not { } text) return fallback ?? throw Missing(key);
        return ConfigNumbers.TryParseBool(text, out var b) ? b : throw Error(key, $"'{text}' is not a boolean (true/false, yes/no, on/off)");
    }

    /// <summary>A non-negative integer: decimal, 0x-hex, optional K/M/G suffix; within <paramref name="min"/>..<paramref name="max"/>.</summary>
    public long GetInteger(string key, long? fallback = null, long min = 0, long max = long.MaxValue) =>
        (long)GetSize(key, fallback is { } f ? (ulong)Math.Max(0, f) : null, (ulong)Math.Max(0, min), (ulong)Math.Max(0, max));

    /// <summary>A size or address: decimal, 0x-hex, optional K/M/G (binary) suffix, within <paramref name="min"/>..<paramref name="max"/>.</summary>
    public ulong GetSize(string key, ulong? fallback = null, ulong min = 0, ulong max = ulong.MaxValue)
    {
        if (Text(key) is not { } text) return fallback ?? throw Missing(key);
        if (!ConfigNumbers.TryParse(text, out var v)) throw Error(key, $"'{text}' is not a number (decimal, 0x-hex, optional K/M/G)");
        if (v < min || v > max) throw Error(key, $"{text} is out of range ({Show(min)}..{Show(max)})");
        return v;
    }

    /// <summary>A HOCON duration (50ms, 10s, 2m), within <paramref name="min"/>..<paramref name="max"/>.</summary>
    public TimeSpan GetDuration(string key, TimeSpan? fallback = null, TimeSpan? min = null, TimeSpan? max = null)
    {
        if (Text(key) is not { } text) return fallback ?? throw Missing(key);
        if (!ConfigNumbers.TryParseDuration(text, out var d)) throw Error(key, $"'{text}' is not a duration (e.g. 50ms, 10s)");
        if (d < (min ?? TimeSpan.Zero) || d > (max ?? TimeSpan.MaxValue))
            throw Error(key, $"{text} is out of range ({min ?? TimeSpan.Zero}..{(max is { } m ? m.ToString() : "unbounded")})");
        return d;
    }

    /// <summary>One of <paramref name="names"/>; <paramref name="what"/> names the kind in errors ("'x' is not a policy (a, b)").</summary>
    public string GetEnum(string key, IReadOnlyCollection<string> names, string? fallback = null, string what = "a known value")
    {
        var text = GetString(key, fallback);
        return names.Contains(text) ? text : throw Error(key, $"'{text}' is not {what} ({string.Join(", ", names)})");
    }

    /// <summary>One of the names of <paramref name="values"/>, as its value.</summary>
    public T GetEnum<T>(string key, IReadOnlyDictionary<string, T> values, string? fallback = null, string what = "a known value") =>
        values[GetEnum(key, values.Keys.ToList(), fallback, what)];

    /// <summary>Inclusive ranges ("0x3f8-0x3ff", "0xf4") from one string or a non-empty list of them; empty when the key is missing.</summary>
    public IReadOnlyList<(ulong First, ulong Last)> GetRanges(string key, ulong max)
    {
        return GetStringOrList(key, allowEmpty: false).Select(s => ConfigNumbers.TryParseRange(s, out var first, out var last) && last <= max
                ? (first, last)
                : throw Error(key, $"'{s}' is not a range (e.g. \"0x3f8-0x3ff\" or \"0xf4\"; at most {Show(max)})"))
            .ToList();
    }

    /// <summary>One scalar or a list of them; empty when the key is missing.</summary>
    public IReadOnlyList<string> GetStringOrList(string key, bool allowEmpty = true) =>
        Value(key) is { } v && v.IsString() && !IsNullValue(v) ? [v.GetString()] : GetStringList(key, allowEmpty);

    /// <summary>A list of scalars; empty when the key is missing.</summary>
    public IReadOnlyList<string> GetStringList(string key, bool allowEmpty = true)
    {
        if (Value(key) is not { } v) return [];
        var items = ListOf(key, v, allowEmpty, "a list of values, e.g. [\"a\", \"b\"]");
        return items.Select((item, i) => item.IsString() && item.GetString() is { } s
            ? s
            : throw Error($"{key}[{i}]", $"expected a value, not {Describe(item)}")).ToList();
    }

    /// <summary>A list of objects, each as a section keyed <c>KEY[i]</c>; empty when the key is missing.</summary>
    public IReadOnlyList<ConfigSection> GetObjectList(string key, string example, bool allowEmpty = true)
    {
        if (Value(key) is not { } v) return [];
        return ListOf(key, v, allowEmpty, $"a list of {example}").Select((item, i) => item.IsObject()
                ? new ConfigSection(item.ToConfig(), FullKey($"{key}[{i}]"), File, BaseDirectory, _sourceOf)
                : throw Error($"{key}[{i}]", $"expected {example}, not {Describe(item)}"))
            .ToList();
    }

    /// <summary>The object at <paramref name="key"/>; an empty section when it is missing; an error for any other shape.</summary>
    public ConfigSection GetSection(string key)
    {
        var v = Value(key);
        if (v is not null && !v.IsObject()) throw Error(key, $"expected an object {{ ... }}, not {Describe(v)}");
        return new ConfigSection(v is null ? null : _config.GetConfig(Quote(key)), FullKey(key), File, BaseDirectory, _sourceOf);
    }

    /// <summary>Every key of this object as a section (e.g. each device of <c>guest.devices</c>).</summary>
    public IEnumerable<(string Key, ConfigSection Section)> Sections() => Keys.Select(k => (k, GetSection(k)));

    private ConfigException Missing(string key) => Error(key, "missing (a value is needed here)");

    private static string Show(ulong v) => v < 0x10000 ? v.ToString() : $"0x{v:x}";

    // Keys of a section may hold dots or other path characters (quoted HOCON keys, e.g. faults.vcpus."0").
    private static string Quote(string key) =>
        key.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_') ? key : $"\"{key.Replace("\"", "\\\"")}\"";

    private HoconValue? Value(string key)
    {
        if (_config.IsEmpty) return null;
        try { return _config.HasPath(Quote(key)) ? _config.GetValue(Quote(key)) : null; }
        catch (Exception e) when (e is not KvmActorsException) { throw Error(key, e.Message.Split('\n')[0]); }
    }

    private static bool IsNullValue(HoconValue v) => v.IsString() && v.GetString() is null;

    // The text of a scalar; null when missing, or a HOCON null with whenNull = null... unless it must be a value.
    private string? Text(string key, string? whenNull = null)
    {
        if (Value(key) is not { } v) return null;
        if (!v.IsString()) throw Error(key, $"expected a value, not {Describe(v)}");
        return v.GetString() ?? whenNull ?? throw Error(key, "expected a value, not null");
    }

    private List<HoconValue> ListOf(string key, HoconValue v, bool allowEmpty, string expected)
    {
        // Akka's parser keeps the whitespace after an empty "[]" as a second value, so IsArray() says no.
        var isList = v.IsArray() || (v.Values.Any(x => x is HoconArray) &&
                                     v.Values.All(x => x is HoconArray || (x is HoconLiteral l && string.IsNullOrWhiteSpace(l.Value))));
        if (!isList) throw Error(key, $"expected {expected}, not {Describe(v)}");
        var items = v.GetArray().ToList();
        // ...and reads "[ ]" as a list holding the blank between the brackets.
        if (items is [{ } only] && only.Values.All(x => x is HoconLiteral { Value: { Length: > 0 } t } && string.IsNullOrWhiteSpace(t))) items.Clear();
        if (items.Count == 0 && !allowEmpty) throw Error(key, "an empty list (leave the key out instead)");
        return items;
    }

    private static string Describe(HoconValue v) =>
        v.IsObject() ? "an object" : v.IsArray() ? "a list" : v.IsString() ? v.GetString() is { } s ? $"'{s}'" : "null" : "an unsupported value";
}

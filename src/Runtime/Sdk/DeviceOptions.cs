using Akka.Configuration;
using Akka.Configuration.Hocon;

namespace KvmActors.Sdk;

/// <summary>
/// A device's <c>options</c> block with errors that name the full key and the config file,
/// e.g. <c>guests/a.conf: guest.devices.com1.options.sink: missing</c>.
/// </summary>
public sealed class DeviceOptions
{
    private readonly Akka.Configuration.Config _config;
    public string KeyPrefix { get; }
    public string File { get; }
    /// <summary>Folder of the config file, for options that are paths relative to it.</summary>
    public string BaseDirectory { get; }

    public DeviceOptions(Akka.Configuration.Config? config, string keyPrefix, string file, string baseDirectory)
    {
        _config = config ?? Akka.Configuration.Config.Empty;
        KeyPrefix = keyPrefix;
        File = file;
        BaseDirectory = baseDirectory;
    }

    public static DeviceOptions Empty(string name = "device") => new(null, $"{name}.options", "<none>", Environment.CurrentDirectory);

    /// <summary>The key is present in the block (even as a HOCON <c>null</c>).</summary>
    public bool Has(string key) => !_config.IsEmpty && _config.HasPath(key);

    /// <summary>
    /// The key is present and holds a HOCON <c>null</c>. Akka's HOCON parser reads a quoted <c>"null"</c>
    /// the same way, so the two cannot be told apart.
    /// </summary>
    public bool IsNull(string key) => Has(key) && Scalar(key) is { IsNull: true };

    public ConfigException Error(string key, string problem) => new(File, $"{KeyPrefix}.{key}", problem);

    /// <summary>
    /// The text of <paramref name="key"/>; when it is missing, <paramref name="fallback"/>, or an error
    /// naming the key when there is none. Never returns null.
    /// </summary>
    /// <param name="whenNull">
    /// What a HOCON <c>null</c> (<c>key = null</c>, or <c>"null"</c>, which the parser reads the same) means
    /// for this key: by default the literal text <c>"null"</c> (so <c>sink = null</c> names the null sink);
    /// another text such as <c>"none"</c>; or C# <c>null</c> to treat the key as missing (the fallback applies).
    /// </param>
    public string GetString(string key, string? fallback = null, string? whenNull = "null")
    {
        var text = Text(key, whenNull);
        return text ?? fallback ?? throw Error(key, "missing (this device needs it)");
    }

    /// <summary>A number (decimal, 0x-hex, optional K/M/G). A HOCON <c>null</c> counts as missing.</summary>
    public long GetInteger(string key, long? fallback = null)
    {
        var text = Text(key, whenNull: null);
        if (text is null) return fallback ?? throw Error(key, "missing (this device needs it)");
        return ConfigNumbers.TryParse(text, out var v) && v <= long.MaxValue ? (long)v : throw Error(key, $"'{text}' is not a number");
    }

    /// <summary>true/on/yes or false/off/no. A HOCON <c>null</c> counts as missing.</summary>
    public bool GetBoolean(string key, bool fallback)
    {
        var text = Text(key, whenNull: null);
        return text switch
        {
            null => fallback,
            "true" or "on" or "yes" => true,
            "false" or "off" or "no" => false,
            _ => throw Error(key, $"'{text}' is not a boolean"),
        };
    }

    private readonly record struct ScalarValue(string? Text, bool IsNull);

    // One scalar value, or an error naming the key for a list or an object.
    private ScalarValue? Scalar(string key)
    {
        HoconValue? value;
        try { value = _config.GetValue(key); }
        catch (Exception e) { throw Error(key, e.Message); }
        if (value is null) return null;
        if (value.IsArray()) throw Error(key, "expected a value, not a list");
        if (value.IsObject()) throw Error(key, "expected a value, not an object");
        var text = value.GetString();
        return new ScalarValue(text, text is null);
    }

    // The key's text; null when it is missing, or a HOCON null with whenNull = null.
    private string? Text(string key, string? whenNull)
    {
        if (!Has(key) || Scalar(key) is not { } s) return null;
        return s.IsNull ? whenNull : s.Text;
    }

    /// <summary>Keys present in the block, so a device can reject ones it does not know.</summary>
    public IEnumerable<string> Keys => _config.IsEmpty ? [] : _config.Root.GetObject().Items.Keys;

    /// <summary>Throws for the first key not in <paramref name="known"/>.</summary>
    public void RejectUnknown(params string[] known)
    {
        foreach (var k in Keys)
            if (!known.Contains(k)) throw Error(k, $"unknown option (known: {string.Join(", ", known)})");
    }
}

namespace KvmActors.Sdk;

/// <summary>
/// A device's <c>options</c> block, read with the same typed readers as the rest of the config
/// (<see cref="ConfigSection"/>). Errors name the full key and the config file (or <c>--set</c>),
/// e.g. <c>guests/a.conf: guest.devices.com1.options.sink: missing</c>.
/// </summary>
public sealed class DeviceOptions(ConfigSection section)
{
    public DeviceOptions(Akka.Configuration.Config? config, string keyPrefix, string file, string baseDirectory)
        : this(new ConfigSection(config, keyPrefix, file, baseDirectory)) { }

    public static DeviceOptions Empty(string name = "device") => new(null, $"{name}.options", "<none>", Environment.CurrentDirectory);

    /// <summary>The full key of the block, e.g. <c>guest.devices.com1.options</c>.</summary>
    public string KeyPrefix => section.Path;
    public string File => section.File;
    /// <summary>Folder of the config file, for options that are paths relative to it.</summary>
    public string BaseDirectory => section.BaseDirectory;

    /// <inheritdoc cref="ConfigSection.Has"/>
    public bool Has(string key) => section.Has(key);
    /// <inheritdoc cref="ConfigSection.IsNull"/>
    public bool IsNull(string key) => section.IsNull(key);
    /// <summary>Keys present in the block, so a device can reject ones it does not know.</summary>
    public IEnumerable<string> Keys => section.Keys;
    /// <inheritdoc cref="ConfigSection.RejectUnknown"/>
    public void RejectUnknown(params string[] known) => section.RejectUnknown(known);
    public ConfigException Error(string key, string problem) => section.Error(key, problem);

    /// <summary>
    /// The text of <paramref name="key"/>; when it is missing, <paramref name="fallback"/>, or an error naming the key.
    /// </summary>
    /// <param name="whenNull">
    /// What a HOCON <c>null</c> (<c>key = null</c>, or <c>"null"</c>, which the parser reads the same) means
    /// for this key: by default the literal text <c>"null"</c> (so <c>sink = null</c> names the null sink);
    /// another text such as <c>"none"</c>; or C# <c>null</c> to treat the key as missing (the fallback applies).
    /// </param>
    public string GetString(string key, string? fallback = null, string? whenNull = "null") =>
        Given(key, whenNull is null) ? section.GetString(key, whenNull: whenNull) : fallback ?? throw Missing(key);

    /// <summary>A non-negative number (decimal, 0x-hex, optional K/M/G) within min..max. A HOCON <c>null</c> counts as missing.</summary>
    public long GetInteger(string key, long? fallback = null, long min = 0, long max = long.MaxValue) =>
        Given(key) ? section.GetInteger(key, min: min, max: max) : fallback ?? throw Missing(key);

    /// <summary>A size (decimal, 0x-hex, optional K/M/G) within min..max. A HOCON <c>null</c> counts as missing.</summary>
    public ulong GetSize(string key, ulong? fallback = null, ulong min = 0, ulong max = ulong.MaxValue) =>
        Given(key) ? section.GetSize(key, min: min, max: max) : fallback ?? throw Missing(key);

    /// <summary>true/yes/on or false/no/off. A HOCON <c>null</c> counts as missing.</summary>
    public bool GetBool(string key, bool? fallback = null) =>
        Given(key) ? section.GetBool(key) : fallback ?? throw Missing(key);

    /// <summary>A HOCON duration (50ms, 10s) within min..max. A HOCON <c>null</c> counts as missing.</summary>
    public TimeSpan GetDuration(string key, TimeSpan? fallback = null, TimeSpan? min = null, TimeSpan? max = null) =>
        Given(key) ? section.GetDuration(key, min: min, max: max) : fallback ?? throw Missing(key);

    /// <summary>One of <paramref name="names"/>; <paramref name="what"/> names the kind in errors. A HOCON <c>null</c> counts as missing.</summary>
    public string GetEnum(string key, IReadOnlyCollection<string> names, string? fallback = null, string what = "a known value") =>
        Given(key) ? section.GetEnum(key, names, what: what) : fallback ?? throw Missing(key);

    // Present with a value (a HOCON null counts as missing unless the reader gives null a meaning).
    private bool Given(string key, bool nullIsMissing = true) => section.Has(key) && !(nullIsMissing && section.IsNull(key));

    private ConfigException Missing(string key) => Error(key, "missing (this device needs it)");

    /// <summary>A list of values; empty when missing.</summary>
    public IReadOnlyList<string> GetStringList(string key, bool allowEmpty = true) => section.GetStringList(key, allowEmpty);
}

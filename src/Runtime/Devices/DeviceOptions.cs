using Akka.Configuration;
using KvmActors.Runtime.Config;

namespace KvmActors.Runtime.Devices;

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

    public bool Has(string key) => !_config.IsEmpty && _config.HasPath(key);

    public ConfigException Error(string key, string problem) => new(File, $"{KeyPrefix}.{key}", problem);

    public string GetString(string key, string? fallback = null)
    {
        if (Has(key)) return _config.GetString(key);
        return fallback ?? throw Error(key, "missing (this device needs it)");
    }

    public long GetInteger(string key, long? fallback = null)
    {
        if (!Has(key)) return fallback ?? throw Error(key, "missing (this device needs it)");
        var text = _config.GetString(key);
        return ConfigNumbers.TryParse(text, out var v) ? (long)v : throw Error(key, $"'{text}' is not a number");
    }

    public bool GetBoolean(string key, bool fallback)
    {
        if (!Has(key)) return fallback;
        var text = _config.GetString(key);
        return text switch
        {
            "true" or "on" or "yes" => true,
            "false" or "off" or "no" => false,
            _ => throw Error(key, $"'{text}' is not a boolean"),
        };
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

namespace KvmActors;

/// <summary>A bad guest or runtime configuration: names the key and the file it came from.</summary>
public sealed class ConfigException : KvmActorsException
{
    public string Key { get; }
    public string File { get; }

    public ConfigException(string file, string key, string problem, Exception? inner = null)
        : base(ErrorKind.Config, $"{file}: {key}: {problem}", inner)
    {
        Key = key;
        File = file;
    }
}

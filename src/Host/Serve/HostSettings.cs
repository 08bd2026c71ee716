using Akka.Configuration;
using KvmActors.Runtime.Config;

namespace KvmActors.Host.Serve;

/// <summary>The VM host's limits and sizes, from <c>kvmactors.host</c> (reference.conf, then the --config file).</summary>
public sealed record HostSettings(
    int MaxVms, int MaxVcpusTotal, ulong MaxMemoryTotal, int ConsoleRing, int MaxEndedKept, TimeSpan RequestTimeout)
{
    /// <summary>The host file's other runtime settings (its <c>kvmactors { }</c> block: plug-in folders, vm.stop-timeout …), for the actor system.</summary>
    public Akka.Configuration.Config RuntimeConfig { get; init; } = Akka.Configuration.Config.Empty;
    /// <summary>Pre-copy stops once a round leaves at most this many dirty pages (host.migration-stop-copy-pages).</summary>
    public long MigrationStopCopyPages { get; init; } = 256;
    /// <summary>Pre-copy stops after this many rounds whatever is left (host.migration-max-rounds).</summary>
    public int MigrationMaxRounds { get; init; } = 30;

    public static HostSettings Default => From(Akka.Configuration.Config.Empty, "<defaults>");

    /// <summary>
    /// Binds the host file's settings; <c>host { }</c> and <c>kvmactors.host { }</c> are the same block.
    /// Errors are <see cref="ConfigException"/>s naming the key and the file.
    /// </summary>
    public static HostSettings From(Akka.Configuration.Config file, string source)
    {
        var empty = Akka.Configuration.Config.Empty;
        var short_ = file.HasPath("host") ? file.GetConfig("host") : empty;
        var full = file.HasPath("kvmactors.host") ? file.GetConfig("kvmactors.host") : empty;
        foreach (var block in new[] { short_, full })
            if (!block.IsEmpty)
                foreach (var key in block.Root.GetObject().Items.Keys)
                    if (!Known.Contains(key)) throw new ConfigException(source, $"host.{key}", $"unknown key (known here: {string.Join(", ", Known)})");
        var c = KvmActorsConfig.Reference.GetConfig("kvmactors.host");
        if (!full.IsEmpty) c = full.WithFallback(c);
        if (!short_.IsEmpty) c = short_.WithFallback(c);

        ulong Size(string key)
        {
            var text = c.GetString(key);
            if (!ConfigNumbers.TryParse(text, out var v)) throw new ConfigException(source, $"host.{key}", $"'{text}' is not a size (decimal, 0x-hex, optional K/M/G)");
            return v;
        }
        int Count(string key, int min)
        {
            var v = (long)Size(key);
            if (v < min || v > int.MaxValue) throw new ConfigException(source, $"host.{key}", $"{v} is out of range ({min}..{int.MaxValue})");
            return (int)v;
        }
        TimeSpan Time(string key)
        {
            try { return c.GetTimeSpan(key); }
            catch (Exception e) { throw new ConfigException(source, $"host.{key}", e.Message); }
        }
        return new HostSettings(Count("max-vms", 0), Count("max-vcpus-total", 0), Size("max-memory-total"),
            Count("console-ring", 1), Count("max-ended-kept", 0), Time("request-timeout"))
        {
            MigrationStopCopyPages = Count("migration-stop-copy-pages", 0),
            MigrationMaxRounds = Count("migration-max-rounds", 1),
        };
    }

    public static HostSettings Load(string? path)
    {
        if (path is null) return Default;
        if (!File.Exists(path)) throw new ConfigException(path, "(file)", "no such file");
        Akka.Configuration.Config parsed;
        try { parsed = ConfigurationFactory.ParseString(File.ReadAllText(path)); }
        catch (Exception e) { throw new ConfigException(path, "(syntax)", e.Message.Split('\n')[0]); }
        return From(parsed, path) with
        {
            RuntimeConfig = parsed.HasPath("kvmactors") ? parsed.GetConfig("kvmactors").Root.AtKey("kvmactors") : Akka.Configuration.Config.Empty,
        };
    }

    private static readonly string[] Known = ["max-vms", "max-vcpus-total", "max-memory-total", "console-ring", "max-ended-kept", "request-timeout",
        "migration-stop-copy-pages", "migration-max-rounds"];
}

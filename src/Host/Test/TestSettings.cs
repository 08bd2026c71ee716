using KvmActors.Runtime.Config;

namespace KvmActors.Host.Test;

/// <summary>
/// The suite runner's settings (<c>kvmactors.test</c> in reference.conf, then a <c>--config</c> file's
/// <c>test { }</c> or <c>kvmactors.test { }</c>), and the file's other <c>kvmactors { }</c> settings, which go to the
/// runner's one actor system (a guest file's own <c>kvmactors { }</c> block cannot: all guests share that system).
/// </summary>
/// <param name="StopGrace">kvmactors.cli.stop-grace: how long the actor system's shutdown may take at the end.</param>
/// <param name="StopWait">How long a stopped guest's VM gets to end: kvmactors.vm.stop-timeout (after which the VM actor
/// releases the VM whatever its vCPUs do) plus the stop grace. A VM not ended by then is reported stuck.</param>
public sealed record TestSettings(TimeSpan DefaultTimeout, int OutputKept, TimeSpan StopGrace, TimeSpan StopWait)
{
    public const int MaxOutputKept = 64 << 20;

    /// <summary>The settings file's runtime settings, for the actor system's config.</summary>
    public Akka.Configuration.Config RuntimeConfig { get; init; } = Akka.Configuration.Config.Empty;

    /// <summary>Binds the settings; a bad one is a <see cref="ConfigException"/> naming the key and the file.</summary>
    public static TestSettings Load(string? path)
    {
        var file = Akka.Configuration.Config.Empty;
        var source = "reference.conf";
        if (path is not null)
        {
            var full = Path.GetFullPath(path);
            var bytes = ConfigFiles.Read(full, path, HoconText.MaxFileBytes, "a settings file", problem => new ConfigException(path, "(file)", problem));
            file = HoconText.Parse(System.Text.Encoding.UTF8.GetString(bytes), path, Path.GetDirectoryName(full)!);
            source = path;
            if (!file.IsEmpty)
                foreach (var key in file.Root.GetObject().Items.Keys.Where(k => k is not ("test" or "kvmactors")))
                    throw new ConfigException(path, key, "unknown key (known here: kvmactors, test)");
        }
        var shortForm = file.HasPath("test") ? file.GetConfig("test").Root.AtKey("test").Root.AtKey("kvmactors") : Akka.Configuration.Config.Empty;
        var runtime = file.HasPath("kvmactors") ? file.GetConfig("kvmactors").Root.AtKey("kvmactors") : Akka.Configuration.Config.Empty;
        // Akka's Config refuses itself (Config.Empty) as its own fallback.
        var own = shortForm.IsEmpty ? runtime : runtime.IsEmpty ? shortForm : shortForm.WithFallback(runtime);
        var merged = KvmActorsConfig.WithDefaults(own.IsEmpty ? null : own);
        var k = new ConfigSection(merged.GetConfig("kvmactors"), "kvmactors", source, Environment.CurrentDirectory);
        RuntimeSettingsBinder.Validate(k);
        var t = k.GetSection("test");
        t.RejectUnknown("default-timeout", "output-kept");
        var grace = RunCommand.Grace(merged, source);
        return new TestSettings(
            t.GetDuration("default-timeout", min: TimeSpan.FromMilliseconds(1), max: CommandLine.MaxTimeout),
            (int)t.GetSize("output-kept", min: 1, max: MaxOutputKept),
            grace,
            k.GetSection("vm").GetDuration("stop-timeout") + grace)
        {
            RuntimeConfig = own,
        };
    }
}

using System.Runtime.InteropServices;
using System.Text.Json;
using Akka.Configuration;
using Akka.Configuration.Hocon;
using KvmActors.Runtime.Config;

namespace KvmActors.Host.Serve;

/// <summary>What <c>POST /vms</c> carries: the guest file's HOCON text, an optional name and <c>--set</c>-style overrides.</summary>
/// <summary>A VM to create: a guest file's text with --set lines, or (<paramref name="Restore"/>) a snapshot directory to run on.</summary>
public sealed record GuestRequest(string Config, string? Name, IReadOnlyList<string> Sets, string? Restore = null);

/// <summary>A request the host refuses, as an RFC 7807 problem (status, title, detail, extra members).</summary>
public sealed class ProblemException(int status, string title, string detail, IDictionary<string, object?>? extensions = null)
    : Exception(detail)
{
    public int Status { get; } = status;
    public string Title { get; } = title;
    public IDictionary<string, object?> Extensions { get; } = extensions ?? new Dictionary<string, object?>();
}

/// <summary>
/// Turns a posted guest into a <see cref="GuestSpec"/> the host may run: relative paths resolve against the
/// guest directory and no path (image, memory and module files, <c>file:</c> sinks) may leave it, also not
/// through a symlink; runtime settings (<c>kvmactors { }</c>, which could load plug-in DLLs) are refused;
/// COM1's sink and input are forced to the VM's console (the host's stdout carries nothing), and so is any
/// other device's <c>stdout</c>/<c>stderr</c> sink.
/// </summary>
public static class GuestPreparation
{
    public const string SourceName = "POST /vms";

    // The parsed request and its console --set lines (with a placeholder for the VM's id), per request text: a host
    // that creates many VMs from one guest spec parses it and works out its console lines once (~1.4 ms a create
    // under load, bench density). Only what depends on the text alone is kept; the path checks run on every create.
    private sealed record PreparedKey(string Config, string Sets, string? Name);
    private sealed record Prepared(Akka.Configuration.Config Merged, List<string> Sets);
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<PreparedKey, Prepared> PreparedCache = new();
    private const int PreparedCacheSize = 64;
    private const string AttachPlaceholder = "\u0001attach\u0001";

    public static GuestSpec Prepare(GuestRequest request, string guestDir, string attachName)
    {
        var root = RealPath(guestDir) ?? Path.GetFullPath(guestDir);
        var key = new PreparedKey(request.Config, string.Join("\n", request.Sets), request.Name);
        if (!PreparedCache.TryGetValue(key, out var prepared))
        {
            prepared = Parse(request);
            if (PreparedCache.Count >= PreparedCacheSize) PreparedCache.Clear();
            PreparedCache[key] = prepared;
        }
        if (prepared.Merged.HasPath("guest")) CheckPaths(prepared.Merged.GetConfig("guest").Root, "guest", root);
        var sets = prepared.Sets.Select(s => s.Replace(AttachPlaceholder, attachName, StringComparison.Ordinal)).ToList();
        try
        {
            return GuestConfigLoader.FromText(request.Config, SourceName, root, sets);
        }
        catch (ConfigException e) { throw ConfigProblem(e, request.Config); }
    }

    /// <summary>The request parsed and checked as far as its text alone allows, its console lines attached to the placeholder.</summary>
    private static Prepared Parse(GuestRequest request)
    {
        var sets = new List<string>(request.Sets);
        if (request.Name is { Length: > 0 } name) sets.Add($"guest.name = {JsonSerializer.Serialize(name)}");

        Akka.Configuration.Config parsed;
        try { parsed = ConfigurationFactory.ParseString(request.Config); }
        catch (Exception e) { throw ConfigProblem(new ConfigException(SourceName, "(syntax)", e.Message.Split('\n')[0].Trim()), request.Config); }
        var merged = parsed;
        if (sets.Count > 0)
        {
            try { merged = GuestConfigLoader.ParseOverrides(sets).WithFallback(parsed); }
            catch (ConfigException e) { throw ConfigProblem(e, null); }
        }
        if (merged.HasPath("kvmactors"))
            throw new ProblemException(400, "Runtime settings refused",
                "a posted guest may not carry a kvmactors { } block (runtime settings and plug-in folders belong to the host)",
                new Dictionary<string, object?> { ["key"] = "kvmactors", ["file"] = SourceName });

        sets.AddRange(ConsoleSets(merged, AttachPlaceholder));
        return new Prepared(merged, sets);
    }

    /// <summary>
    /// The --set lines that attach a guest's console to <paramref name="attachName"/>: COM1 (in the defaults, so always
    /// there unless removed) sink and input, and every other device's stdout/stderr sink; the host's stdio carries none.
    /// </summary>
    /// <param name="merged">The guest's config (file and overrides, without the defaults).</param>
    public static IEnumerable<string> ConsoleSets(Akka.Configuration.Config merged, string attachName)
    {
        var devices = merged.HasPath("guest.devices") ? merged.GetConfig("guest.devices") : Akka.Configuration.Config.Empty;
        var defaults = KvmActorsConfig.Reference.GetConfig("kvmactors.guest-defaults.devices");
        var all = devices.WithFallback(defaults);
        var console = $"\"{AttachedIo.Prefix}{attachName}\"";
        foreach (var device in all.Root.GetObject().Items.Keys)
        {
            var d = all.GetConfig(device);
            if (d is null || d.IsEmpty) continue;
            var sink = d.HasPath("options.sink") ? d.GetString("options.sink") : null;
            var type = d.HasPath("type") ? d.GetString("type") : null;
            if (device == "com1" && type == "uart-16550")
            {
                yield return $"guest.devices.com1.options.sink = {console}";
                yield return $"guest.devices.com1.options.input = {console}";
            }
            else if (device == "com1" || sink is "stdout" or "stderr" || (sink is null && type is "uart-16550" or "debugcon"))
            {
                yield return $"guest.devices.{Quote(device)}.options.sink = {console}";
            }
        }
    }

    private static string Quote(string key) => key.All(c => char.IsLetterOrDigit(c) || c is '-' or '_') ? key : JsonSerializer.Serialize(key);

    /// <summary>A config error as a 400 problem naming the key, the file and (when it can be found) the line.</summary>
    public static ProblemException ConfigProblem(ConfigException e, string? text)
    {
        var ext = new Dictionary<string, object?> { ["key"] = e.Key, ["file"] = e.File };
        if (text is not null && LineOf(text, e.Key) is { } line) ext["line"] = line;
        return new ProblemException(400, "Config error", e.Message, ext);
    }

    /// <summary>The line that sets the key's last part (best effort: HOCON nests keys, so the last part is looked for).</summary>
    private static int? LineOf(string text, string key)
    {
        var last = key.Split('.').LastOrDefault(p => p.Length > 0 && !p.StartsWith('('));
        if (last is null) return null;
        var lines = text.Split('\n');
        for (int i = 0; i < lines.Length; i++)
        {
            var t = lines[i].TrimStart();
            if (t.StartsWith(last) && t.Length > last.Length && t[last.Length..].TrimStart() is { Length: > 0 } rest && rest[0] is '=' or ':' or '{' or '.')
                return i + 1;
            if (t.Contains("." + last + " ") || t.Contains("." + last + "=")) return i + 1;
        }
        return null;
    }

    /// <summary>
    /// A saved guest's config (from a snapshot or a migration) is input like a posted one: its file paths must stay
    /// inside the guest directory, which its relative paths then resolve against; a problem is a 422.
    /// </summary>
    public static void CheckSavedPaths(string configJson, string guestDir)
    {
        var root = RealPath(guestDir) ?? Path.GetFullPath(guestDir);
        Akka.Configuration.Config parsed;
        try { parsed = ConfigurationFactory.ParseString(configJson); }
        catch (Exception e) { throw new ProblemException(422, "Saved guest refused", $"its config cannot be read: {e.Message.Split('\n')[0]}"); }
        if (!parsed.HasPath("guest")) return;
        try { CheckPaths(parsed.GetConfig("guest").Root, "guest", root); }
        catch (ProblemException p) { throw new ProblemException(422, "Saved guest refused", p.Message, p.Extensions); }
    }

    private static void CheckPaths(HoconValue value, string key, string root)
    {
        if (value.IsObject())
        {
            foreach (var (k, v) in value.GetObject().Items) CheckPaths(v, $"{key}.{k}", root);
        }
        else if (value.IsArray())
        {
            var items = value.GetArray();
            for (int i = 0; i < items.Count; i++) CheckPaths(items[i], $"{key}[{i}]", root);
        }
        else if (value.IsString())
        {
            var s = value.GetString();
            if (s is null) return;
            if (key.EndsWith(".file")) CheckPath(s, key, root);
            else if (s.StartsWith("file:")) CheckPath(s["file:".Length..], key, root);
            else if (key.EndsWith(".input") && s == "stdin") { /* replaced by the console input below */ }
        }
    }

    /// <summary>The path, taken relative to the guest directory, must stay inside it, also after symlinks.</summary>
    public static void CheckPath(string path, string key, string root)
    {
        var full = Path.GetFullPath(Path.Combine(root, path));
        if (!Inside(full, root) || path.Split('/', '\\').Contains(".."))
            throw Escape(key, path, root);
        // Follow symlinks: the nearest existing ancestor's real path must still be inside.
        var probe = full;
        while (!File.Exists(probe) && !Directory.Exists(probe))
        {
            var parent = Path.GetDirectoryName(probe);
            if (parent is null || parent == probe) return;
            probe = parent;
        }
        if (RealPath(probe) is { } real && !Inside(real, root)) throw Escape(key, path, root);
    }

    private static bool Inside(string full, string root) =>
        full == root || full.StartsWith(root.EndsWith('/') ? root : root + "/", StringComparison.Ordinal);

    private static ProblemException Escape(string key, string path, string root) =>
        new(400, "Path outside the guest directory", $"{SourceName}: {key}: '{path}' is outside the guest directory {root}",
            new Dictionary<string, object?> { ["key"] = key, ["file"] = SourceName });

    [DllImport("libc", EntryPoint = "realpath", SetLastError = true)]
    private static extern IntPtr RealPathNative([MarshalAs(UnmanagedType.LPUTF8Str)] string path, IntPtr resolved);

    [DllImport("libc", EntryPoint = "free")]
    private static extern void Free(IntPtr p);

    public static string? RealPath(string path)
    {
        var p = RealPathNative(path, IntPtr.Zero);
        if (p == IntPtr.Zero) return null;
        try { return Marshal.PtrToStringUTF8(p); }
        finally { Free(p); }
    }
}

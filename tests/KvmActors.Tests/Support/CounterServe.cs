using System.Diagnostics;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using KvmActors.Tests.Serve;
using KvmActors.Tests.Snapshot;

namespace KvmActors.Tests.Support;

/// <summary>The counter guest (hocon/guests/counter.conf) on a real <c>kvmactors serve</c>: create, watch, snapshot, migrate.</summary>
public static class CounterServe
{
    /// <summary>Delay-loop iterations after each line that make the 4-vCPU counter print about 20 lines a second here.</summary>
    public const int SlowDelay = 20000;

    public static string Conf => File.ReadAllText(SnapshotGuests.ConfPath);

    /// <summary>Two servers, started side by side (each takes a second or two to answer); none is left running if one fails.</summary>
    public static async Task<(ServeServer, ServeServer)> StartTwoAsync()
    {
        var starting = Task.Run(() => ServeServer.Start());
        ServeServer first;
        try { first = ServeServer.Start(); }
        catch (Exception)
        {
            try { (await starting).Dispose(); } catch (Exception) { /* the first failure is the one to see */ }
            throw;
        }
        try { return (first, await starting); }
        catch (Exception)
        {
            first.Dispose();
            throw;
        }
    }

    /// <summary>Creates the counter with <paramref name="sets"/> (<see cref="SnapshotGuests.Overrides"/>); its id.</summary>
    public static async Task<string> CreateCounterAsync(this ServeServer s, IEnumerable<string> sets, string? name = null) =>
        (string)(await s.CreateAsync(Conf, name, [.. sets]))["id"]!;

    /// <summary>Polls the console (bounded) until it holds at least <paramref name="lines"/> lines; the console then.</summary>
    public static async Task<string> WaitLinesAsync(this ServeServer s, string id, int lines, TimeSpan? limit = null)
    {
        var sw = Stopwatch.StartNew();
        while (true)
        {
            var text = await s.ConsoleAsync(id);
            if (text.Count(c => c == '\n') >= lines) return text;
            if (sw.Elapsed > (limit ?? TimeSpan.FromSeconds(30)))
                throw new TimeoutException($"VM {id} printed {text.Count(c => c == '\n')} lines, not {lines}, within {limit}: {s.Stderr}");
            await Task.Delay(20);
        }
    }

    /// <summary>POST /vms/{id}/snapshot; the status and the JSON answer (a problem document when refused).</summary>
    public static Task<(int Status, JsonObject Body)> SnapshotAsync(this ServeServer s, string id, string path, bool resume) =>
        PostAsync(s, $"vms/{id}/snapshot", new { path, resume });

    public static Task<(int Status, JsonObject Body)> MigrateAsync(this ServeServer s, string id, string to) =>
        PostAsync(s, $"vms/{id}/migrate", new { to });

    public static Task<(int Status, JsonObject Body)> RestoreAsync(this ServeServer s, string path, string? name = null) =>
        PostAsync(s, "vms", new { restore = path, name });

    private static async Task<(int, JsonObject)> PostAsync(ServeServer s, string uri, object body)
    {
        using var r = await s.Http.PostAsJsonAsync(uri, body);
        var text = await r.Content.ReadAsStringAsync();
        return ((int)r.StatusCode, JsonNode.Parse(text)!.AsObject());
    }

    /// <summary>The whole console as kept, and the offset of its first byte (X-Console-First-Offset).</summary>
    public static async Task<(long First, string Text)> ConsoleFromFirstAsync(this ServeServer s, string id)
    {
        using var r = await s.Http.GetAsync($"vms/{id}/console?offset=0");
        r.EnsureSuccessStatusCode();
        var first = long.Parse(r.Headers.GetValues(global::KvmActors.Host.Serve.ServeApi.ConsoleFirstOffsetHeader).Single());
        return (first, Encoding.Latin1.GetString(await r.Content.ReadAsByteArrayAsync()));
    }

    /// <summary>Waits for the VM to end; its details (state, end, exitStatus).</summary>
    public static Task<JsonObject> WaitEndedAsync(this ServeServer s, string id, TimeSpan? limit = null) =>
        s.WaitStateAsync(id, "ended", limit ?? TimeSpan.FromSeconds(60));

    public static int ExitStatus(JsonObject vm) => (int)vm["end"]!["exitStatus"]!;
}

/// <summary>
/// The snapshot and migration tests that run real servers and 4-vCPU guests busy in delay loops run one at a time:
/// side by side on two cores they would slow each other (and every other test) several times over.
/// </summary>
[Xunit.CollectionDefinition(Name)]
public sealed class CounterProcessesCollection
{
    public const string Name = "counter guests in real processes";
}

using System.Diagnostics;
using System.IO.Pipelines;
using System.Net.Http.Headers;
using System.Text.Json.Nodes;
using Akka.Actor;
using KvmActors.Host.VmClient;
using KvmActors.Runtime.Snapshot;
using KvmActors.Runtime.Vm;
using Serilog;

namespace KvmActors.Host.Serve.Migration;

/// <summary>
/// Live migration, source side in the host: asks the VM actor for pages round by round (pre-copy with the dirty
/// log, see VmActor.Migration.cs) and streams them to the target's <c>POST /migrations/incoming</c>, then the
/// final state. The source VM ends as Migrated only once the target answered that its copy runs; on any failure
/// (target unreachable, refused, stream broken) the source runs on.
/// </summary>
/// <param name="keepId">The fleet's migrations: the VM keeps its id on the target and its console's kept bytes
/// go along (a Console frame), so the target's console reads as one run's.</param>
public sealed class MigrationSender(HostedVm vm, string target, HostSettings settings, string? keepId = null)
{
    private const int Batch = 1 << 20;

    public sealed record Outcome(int Status, JsonObject Body);

    public async Task<Outcome> RunAsync(CancellationToken ct)
    {
        var clock = Stopwatch.StartNew();
        using var http = ClientFor(target);
        var timeout = settings.RequestTimeout;
        var begun = await Ask(new BeginMigration(), timeout);
        if (begun is not MigrationBegun hello) return Refused(begun);
        var log = Log.ForContext("VmId", vm.Id);
        var pipe = new Pipe(new PipeOptions(pauseWriterThreshold: 4 * Batch, resumeWriterThreshold: 2 * Batch));
        var content = new StreamContent(pipe.Reader.AsStream());
        content.Headers.ContentType = new MediaTypeHeaderValue(MigrationWire.ContentType);
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(ct);
        Task<HttpResponseMessage>? post = null;
        long bytesSent = 0, pagesSent = 0;
        var rounds = 0;
        TimeSpan? downtimeStart = null;
        try
        {
            post = http.PostAsync(keepId is null ? "migrations/incoming" : $"migrations/incoming?id={Uri.EscapeDataString(keepId)}", content, cancel.Token);
            await MigrationWire.WriteJson(pipe.Writer, MigrationWire.Hello, new MigrationHello(SnapshotState.FormatName, SnapshotState.CurrentFormatVersion,
                vm.Name, vm.Id, hello.Guest, hello.Memory, hello.Irqchip, hello.Vcpus), cancel.Token);

            // Pre-copy while the guest runs: round 0 is every page, each later round what the guest dirtied meanwhile,
            // until a round is small enough to send with the guest paused, or the rounds run out.
            while (true)
            {
                var (bytes, pages) = await SendRound(pipe.Writer, post, cancel.Token);
                bytesSent += bytes;
                pagesSent += pages;
                var next = await Ask(new NextMigrationRound(), timeout);
                if (next is not MigrationRoundStarted round) throw new MigrationFailed(Reason(next));
                rounds = round.Round;
                if (round.DirtyPages <= settings.MigrationStopCopyPages || round.Round >= settings.MigrationMaxRounds)
                {
                    // The pages of this last round go with the guest paused, together with the final dirty pages.
                    log.Information("VM {VmId} migration: round {Round} has {Pages} dirty page(s): stop and copy", vm.Id, round.Round, round.DirtyPages);
                    break;
                }
            }
            downtimeStart = clock.Elapsed;
            var final = await Ask(new FinishMigration(), timeout);
            if (final is not MigrationFinalState state) throw new MigrationFailed(Reason(final));
            var (lastBytes, lastPages) = await SendRound(pipe.Writer, post, cancel.Token);
            bytesSent += lastBytes;
            pagesSent += lastPages;
            await MigrationWire.WriteJson(pipe.Writer, MigrationWire.State, state.State, cancel.Token);
            // The guest is paused and its devices have handed over their state: the console has all it will get here.
            if (keepId is not null)
                await MigrationWire.WriteFrame(pipe.Writer, MigrationWire.Console, vm.Console.Read(vm.Console.Total - MigrationWire.MaxFrame).Bytes, cancel.Token);
            var consoleOffset = new byte[8];
            System.Buffers.Binary.BinaryPrimitives.WriteInt64LittleEndian(consoleOffset, vm.Console.Total);
            await MigrationWire.WriteFrame(pipe.Writer, MigrationWire.End, consoleOffset, cancel.Token);
            await pipe.Writer.CompleteAsync();

            using var response = await post.WaitAsync(timeout + TimeSpan.FromSeconds(30), cancel.Token);
            var text = await response.Content.ReadAsStringAsync(cancel.Token);
            var body = text.Length > 0 ? JsonNode.Parse(text) as JsonObject : null;
            if (!response.IsSuccessStatusCode)
                throw new MigrationFailed($"the target refused the VM: {(int)response.StatusCode} {body?["title"]}: {body?["detail"] ?? text}");
            var targetId = (string?)body?["id"] ?? "?";
            var downtime = clock.Elapsed - downtimeStart.Value;
            vm.MigratedTo = new MigrationTarget(target, targetId);
            vm.Actor.Tell(new EndMigration(true, $"migrated to {target} as VM {targetId}"));
            log.Information("VM {VmId} migrated to {Target} as {TargetId}: {Rounds} round(s), {MiB:F1} MiB sent, downtime {Downtime:F1} ms, total {Total:F1} ms",
                vm.Id, target, targetId, rounds + 1, bytesSent / 1048576.0, downtime.TotalMilliseconds, clock.Elapsed.TotalMilliseconds);
            return new Outcome(200, new JsonObject
            {
                ["id"] = vm.Id, ["state"] = "migrated", ["to"] = target, ["targetId"] = targetId,
                ["rounds"] = rounds + 1, ["pagesSent"] = pagesSent, ["bytesSent"] = bytesSent,
                ["downtimeMs"] = Math.Round(downtime.TotalMilliseconds, 1), ["totalMs"] = Math.Round(clock.Elapsed.TotalMilliseconds, 1),
            });
        }
        catch (Exception e) when (e is MigrationFailed or HttpRequestException or IOException or OperationCanceledException or TimeoutException or System.Text.Json.JsonException)
        {
            cancel.Cancel();
            await pipe.Writer.CompleteAsync(e);
            if (post is not null) { try { (await post).Dispose(); } catch (Exception) { /* the failure is already the reason */ } }
            var reason = e is MigrationFailed ? e.Message : Unreachable(e);
            vm.Actor.Tell(new EndMigration(false, reason));
            log.Warning("VM {VmId} migration to {Target} failed; the VM runs on here: {Reason}", vm.Id, target, reason);
            return new Outcome(502, new JsonObject { ["title"] = "Migration failed", ["detail"] = reason, ["status"] = 502 });
        }
    }

    /// <summary>Every page of the current round, in batches; a target that answered early (a refusal) stops it.</summary>
    private async Task<(long Bytes, long Pages)> SendRound(PipeWriter writer, Task<HttpResponseMessage> post, CancellationToken ct)
    {
        long bytes = 0, pages = 0;
        while (true)
        {
            if (post.IsCompleted) throw new MigrationFailed(await EarlyAnswer(post));
            var answer = await Ask(new ReadMigrationPages(Batch), settings.RequestTimeout);
            if (answer is not MigrationPages batch) throw new MigrationFailed(Reason(answer));
            foreach (var run in batch.Runs)
            {
                var frame = MigrationWire.PageFrame(run.Region, run.FirstPage, run.Count, run.Bytes ?? []);
                await MigrationWire.WriteFrame(writer, run.Bytes is null ? MigrationWire.Zero : MigrationWire.Pages, frame, ct);
                bytes += frame.Length;
                pages += run.Count;
            }
            if (batch.RoundDone) return (bytes, pages);
        }
    }

    private async Task<string> EarlyAnswer(Task<HttpResponseMessage> post)
    {
        try
        {
            using var r = await post;
            return $"the target answered before the end of the stream: {(int)r.StatusCode} {await r.Content.ReadAsStringAsync()}";
        }
        catch (Exception e) { return Unreachable(e); }
    }

    private string Unreachable(Exception e) => $"the target {target} cannot be reached or broke off: {e.GetBaseException().Message}";

    private async Task<object> Ask(object message, TimeSpan timeout)
    {
        try { return await vm.Actor.Ask<object>(message, timeout); }
        catch (AskTimeoutException) { return new MigrationRefused($"the VM did not answer {message.GetType().Name} within {timeout}"); }
    }

    private static string Reason(object answer) => answer is MigrationRefused r ? r.Reason : $"unexpected answer {answer.GetType().Name}";

    private static Outcome Refused(object answer) =>
        new(409, new JsonObject { ["title"] = "Cannot migrate", ["detail"] = Reason(answer), ["status"] = 409 });

    /// <summary>The other server: <c>unix:/path/to.sock</c> (or a path), <c>tcp:HOST:PORT</c> or <c>http://HOST:PORT</c>.</summary>
    public static HttpClient ClientFor(string address) =>
        address.StartsWith("unix:") ? ApiClient.ForSocket(address[5..])
        : address.StartsWith('/') ? ApiClient.ForSocket(address)
        : ApiClient.ForHost(address);

    private sealed class MigrationFailed(string message) : Exception(message);
}

/// <summary>Where a VM went: the other server and the VM's id there.</summary>
public sealed record MigrationTarget(string Address, string Id);

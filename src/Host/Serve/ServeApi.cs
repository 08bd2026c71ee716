using Akka.Actor;
using KvmActors.Runtime.Vm;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Prometheus;

namespace KvmActors.Host.Serve;

/// <summary>The HTTP API of <c>kvmactors serve</c> (ASP.NET Core minimal APIs). Errors are RFC 7807 problem details.</summary>
public static class ServeApi
{
    public const string ConsoleFirstOffsetHeader = "X-Console-First-Offset";
    public const string ConsoleStartHeader = "X-Console-Start";
    public const string ConsoleNextOffsetHeader = "X-Console-Next-Offset";

    private sealed record CreateBody(string? Name, string? Config, string[]? Set, string? Restore);
    private sealed record SnapshotBody(string? Path, bool? Resume);
    private sealed record MigrateBody(string? To);

    public static void Map(WebApplication app)
    {
        VmHost Host(HttpContext c) => c.RequestServices.GetRequiredService<VmHost>();
        Fleet.FleetApi.Map(app); // serve --cluster only: the fleet's endpoints (Fleet/FleetApi.cs)

        app.MapGet("/healthz", (HttpContext c) =>
        {
            var host = Host(c);
            return Results.Json(new JsonObject { ["status"] = "ok", ["vms"] = host.All.Count() });
        });

        app.MapPost("/vms", async (HttpContext c) =>
        {
            var host = Host(c);
            GuestRequest request;
            try { request = await ReadCreate(c.Request); }
            catch (ProblemException p) { host.Metrics.Refused(p.Status); return Problem(p); }
            try
            {
                var vm = request.Restore is { } restore ? host.Restore(restore, request.Name) : host.Create(request);
                return Results.Json(new JsonObject { ["id"] = vm.Id, ["name"] = vm.Name, ["state"] = vm.State },
                    statusCode: StatusCodes.Status201Created).WithLocation($"/vms/{vm.Id}");
            }
            catch (ProblemException p) { return Problem(p); }
        });

        app.MapGet("/vms", async (HttpContext c) =>
        {
            var vms = Host(c).All.ToList();
            var live = await Task.WhenAll(vms.Select(LiveStatus));
            return Results.Json(new JsonArray(vms.Select((v, i) => (JsonNode)Summary(v, live[i])).ToArray()));
        });

        app.MapGet("/vms/{id}", async (HttpContext c, string id) =>
            Host(c).Find(id) is { } vm ? Results.Json(Details(vm, await LiveStatus(vm))) : NotFound(id));

        app.MapGet("/vms/{id}/report", (HttpContext c, string id) =>
        {
            if (Host(c).Find(id) is not { } vm) return NotFound(id);
            if (vm.State != VmStates.Ended || vm.Ended is null)
                return Results.Problem(statusCode: 409, title: "VM has not ended", detail: $"VM {id} is {vm.State}; its report exists once it ends");
            return Results.Json(VmHost.Report(vm));
        });

        app.MapPost("/vms/{id}/pause", async (HttpContext c, string id) =>
        {
            var host = Host(c);
            if (host.Find(id) is not { } vm) return NotFound(id);
            return Control(await host.PauseAsync(vm, c.RequestAborted), vm, "pause");
        });

        app.MapPost("/vms/{id}/resume", async (HttpContext c, string id) =>
        {
            var host = Host(c);
            if (host.Find(id) is not { } vm) return NotFound(id);
            return Control(await host.ResumeAsync(vm, c.RequestAborted), vm, "resume");
        });

        app.MapPost("/vms/{id}/snapshot", async (HttpContext c, string id) =>
        {
            var host = Host(c);
            if (host.Find(id) is not { } vm) return NotFound(id);
            var (body, bad) = await ReadJson<SnapshotBody>(c);
            if (bad is not null) return bad;
            if (body?.Path is not { } path)
                return Results.Problem(statusCode: 400, title: "Bad request", detail: "the JSON body needs \"path\": a new directory inside the snapshot directory");
            try
            {
                var (status, answer, consoleOffset) = await host.SnapshotAsync(vm, path, body.Resume ?? true, c.RequestAborted);
                return answer switch
                {
                    VmSnapshotted done => Results.Json(new JsonObject
                    {
                        ["id"] = vm.Id, ["path"] = done.Directory, ["state"] = vm.State,
                        ["memoryBytes"] = done.Stats.MemoryBytes, ["dataBytes"] = done.Stats.DiskBytes, ["stateBytes"] = done.Stats.StateBytes,
                        ["pauseMs"] = Math.Round(done.Stats.PauseTime.TotalMilliseconds, 1), ["writeMs"] = Math.Round(done.Stats.WriteTime.TotalMilliseconds, 1),
                        ["totalMs"] = Math.Round(done.Elapsed.TotalMilliseconds, 1),
                        ["consoleOffset"] = consoleOffset,
                        ["freshDevices"] = new JsonArray(done.FreshDevices.Select(d => (JsonNode)d).ToArray()),
                    }),
                    VmSnapshotFailed failed => Results.Problem(statusCode: status, title: "Snapshot failed", detail: failed.Reason),
                    _ => Results.Problem(statusCode: 500, title: "Snapshot failed", detail: answer.ToString()),
                };
            }
            catch (ProblemException p) { return Problem(p); }
        });

        app.MapPost("/vms/{id}/migrate", async (HttpContext c, string id) =>
        {
            var host = Host(c);
            if (host.Find(id) is not { } vm) return NotFound(id);
            var (body, bad) = await ReadJson<MigrateBody>(c);
            if (bad is not null) return bad;
            if (body?.To is not { Length: > 0 } to)
                return Results.Problem(statusCode: 400, title: "Bad request", detail: "the JSON body needs \"to\": the other server (unix:/path/to.sock or http://127.0.0.1:PORT)");
            var outcome = await host.MigrateAsync(vm, to, c.RequestAborted);
            return outcome.Status == 200
                ? Results.Json(outcome.Body)
                : Results.Problem(statusCode: outcome.Status, title: (string?)outcome.Body["title"], detail: (string?)outcome.Body["detail"]);
        });

        // The target side of a migration: the source server streams the VM here (Migration/MigrationWire.cs).
        app.MapPost("/migrations/incoming", async (HttpContext c) =>
        {
            var host = Host(c);
            if (c.Request.ContentType != Migration.MigrationWire.ContentType)
                return Results.Problem(statusCode: 415, title: "Unsupported media type", detail: $"a migration stream is {Migration.MigrationWire.ContentType}");
            // Pre-copy may send the guest's memory several times over: the stream is long, but every frame is bounded
            // and lands in memory of the guest's size, so Kestrel's body limit (30 MB) does not apply here.
            if (c.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } limit) limit.MaxRequestBodySize = null;
            try
            {
                // ?id=: the VM keeps its id here (the fleet moves a VM under its id); an actor name, so letters, digits and '-' only.
                var keepId = c.Request.Query["id"].FirstOrDefault();
                if (keepId is not null && (keepId.Length is 0 or > 64 || !keepId.All(ch => char.IsAsciiLetterOrDigit(ch) || ch == '-')))
                    return Results.Problem(statusCode: 400, title: "Bad request", detail: $"id '{keepId}': 1 to 64 letters, digits or '-'");
                var vm = await new Migration.MigrationReceiver(host).ReceiveAsync(c.Request.Body, c.RequestAborted, keepId);
                return Results.Json(new JsonObject { ["id"] = vm.Id, ["name"] = vm.Name, ["state"] = vm.State, ["consoleOffset"] = vm.Console.FirstKept },
                    statusCode: StatusCodes.Status201Created).WithLocation($"/vms/{vm.Id}");
            }
            catch (ProblemException p) { host.Metrics.Refused(p.Status); return Problem(p); }
        });

        app.MapPost("/vms/{id}/stop", async (HttpContext c, string id) =>
        {
            var host = Host(c);
            if (host.Find(id) is not { } vm) return NotFound(id);
            if (!await host.StopAsync(vm, "stopped through the API", host.Settings.RequestTimeout))
                return Results.Problem(statusCode: 504, title: "Stop timed out", detail: $"VM {id} did not end within {host.Settings.RequestTimeout}");
            return Results.Json(Details(vm));
        });

        app.MapDelete("/vms/{id}", async (HttpContext c, string id) =>
        {
            var host = Host(c);
            if (host.Find(id) is not { } vm) return NotFound(id);
            if (!await host.StopAsync(vm, "deleted through the API", host.Settings.RequestTimeout))
                return Results.Problem(statusCode: 504, title: "Stop timed out", detail: $"VM {id} did not end within {host.Settings.RequestTimeout}");
            host.Remove(vm);
            return Results.NoContent();
        });

        app.MapGet("/vms/{id}/console", async (HttpContext c, string id) =>
        {
            var host = Host(c);
            if (host.Find(id) is not { } vm) return NotFound(id);
            long offset = 0;
            if (c.Request.Query["offset"] is { Count: > 0 } o && (!long.TryParse(o[0], out offset) || offset < 0))
                return Results.Problem(statusCode: 400, title: "Bad offset", detail: $"offset '{o[0]}' is not a non-negative integer");
            var follow = c.Request.Query["follow"] is { Count: > 0 } f && f[0] is "true" or "1" or "yes";
            var ring = vm.Console;
            if (!follow)
            {
                var (first, start, bytes) = ring.Read(offset);
                c.Response.Headers[ConsoleFirstOffsetHeader] = first.ToString();
                c.Response.Headers[ConsoleStartHeader] = start.ToString();
                c.Response.Headers[ConsoleNextOffsetHeader] = (start + bytes.Length).ToString();
                return Results.Bytes(bytes, "application/octet-stream");
            }
            // Streaming: chunked, until the VM has ended and every kept byte went out (or the client left).
            c.Response.ContentType = "application/octet-stream";
            c.Response.Headers[ConsoleFirstOffsetHeader] = ring.FirstKept.ToString();
            c.Response.Headers[ConsoleStartHeader] = Math.Max(offset, ring.FirstKept).ToString();
            c.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpResponseBodyFeature>()?.DisableBuffering();
            await c.Response.StartAsync(c.RequestAborted);
            await c.Response.Body.FlushAsync(c.RequestAborted); // the headers go out now, not with the first byte
            var next = offset;
            try
            {
                while (true)
                {
                    var closed = ring.Closed;
                    var (_, start, bytes) = ring.Read(next, 64 * 1024);
                    if (bytes.Length > 0)
                    {
                        await c.Response.Body.WriteAsync(bytes, c.RequestAborted);
                        await c.Response.Body.FlushAsync(c.RequestAborted);
                        next = start + bytes.Length;
                        continue;
                    }
                    if (closed) break;
                    await ring.WaitAsync(next, c.RequestAborted);
                }
            }
            catch (OperationCanceledException) { }
            return Results.Empty;
        });

        app.MapPost("/vms/{id}/console", async (HttpContext c, string id) =>
        {
            var host = Host(c);
            if (host.Find(id) is not { } vm) return NotFound(id);
            using var ms = new MemoryStream();
            await c.Request.Body.CopyToAsync(ms, c.RequestAborted);
            if (vm.State == VmStates.Ended)
                return Results.Problem(statusCode: 409, title: "VM has ended", detail: $"VM {id} has ended; its console takes no input");
            try { vm.Input.Push(ms.ToArray()); }
            catch (InvalidOperationException)
            {
                return Results.Problem(statusCode: 409, title: "VM has ended", detail: $"VM {id} has ended; its console takes no input");
            }
            host.Metrics.ConsoleInput((int)ms.Length);
            return Results.Json(new JsonObject { ["accepted"] = ms.Length, ["pending"] = vm.Input.Pending });
        });

        app.MapGet("/metrics", async (HttpContext c) =>
        {
            var host = Host(c);
            c.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
            await host.Metrics.Registry.CollectAndExportAsTextAsync(c.Response.Body, c.RequestAborted);
        });
    }

    internal static async Task<GuestRequest> ReadCreate(HttpRequest r)
    {
        var type = r.ContentType ?? "";
        using var reader = new StreamReader(r.Body, Encoding.UTF8);
        var body = await reader.ReadToEndAsync();
        if (type.StartsWith("application/json"))
        {
            CreateBody? parsed;
            try { parsed = JsonSerializer.Deserialize<CreateBody>(body, new JsonSerializerOptions(JsonSerializerDefaults.Web)); }
            catch (JsonException e) { throw new ProblemException(400, "Bad JSON", e.Message); }
            if (parsed?.Restore is { } restore)
            {
                if (parsed.Config is not null || parsed.Set is { Length: > 0 })
                    throw new ProblemException(400, "Bad request", "\"restore\" takes the guest from the snapshot: give no \"config\" or \"set\" with it");
                return new GuestRequest("", parsed.Name, [], restore);
            }
            if (parsed?.Config is not { } config)
                throw new ProblemException(400, "Bad request", "the JSON body needs \"config\" (the guest file's HOCON text) or \"restore\" (a snapshot directory)");
            return new GuestRequest(config, parsed.Name, parsed.Set ?? []);
        }
        if (type.StartsWith("application/hocon") || type.StartsWith("text/plain") || type.Length == 0)
            return new GuestRequest(body, r.Query["name"].FirstOrDefault(), r.Query["set"].Where(s => s is not null).Select(s => s!).ToList());
        throw new ProblemException(415, "Unsupported media type", $"'{type}': send application/hocon (the guest file) or application/json {{name, config, set}}");
    }

    /// <summary>A request's JSON body, or the 400 that says why it is not JSON.</summary>
    private static async Task<(T? Body, IResult? Problem)> ReadJson<T>(HttpContext c)
    {
        try { return (await JsonSerializer.DeserializeAsync<T>(c.Request.Body, new JsonSerializerOptions(JsonSerializerDefaults.Web), c.RequestAborted), null); }
        catch (JsonException e) { return (default, Results.Problem(statusCode: 400, title: "Bad JSON", detail: e.Message)); }
    }

    private static IResult Control(VmHost.ControlOutcome outcome, HostedVm vm, string what) => outcome switch
    {
        VmHost.ControlOutcome.Done => Results.Json(Details(vm)),
        VmHost.ControlOutcome.Conflict => Results.Problem(statusCode: 409, title: $"Cannot {what}",
            detail: $"VM {vm.Id} is {vm.State}: {what} is not possible"),
        _ => Results.Problem(statusCode: 504, title: $"{what} timed out", detail: $"VM {vm.Id} did not answer the {what} in time"),
    };

    private static IResult Problem(ProblemException p) =>
        Results.Problem(statusCode: p.Status, title: p.Title, detail: p.Message, extensions: p.Extensions);

    private static IResult NotFound(string id) => Results.Problem(statusCode: 404, title: "No such VM", detail: $"no VM with id '{id}'");

    private static IResult WithLocation(this IResult result, string location) => new LocationResult(result, location);

    private sealed class LocationResult(IResult inner, string location) : IResult
    {
        public Task ExecuteAsync(HttpContext httpContext)
        {
            httpContext.Response.Headers.Location = location;
            return inner.ExecuteAsync(httpContext);
        }
    }

    /// <summary>A running VM's live exit counts (null once it has ended, or if it does not answer within a second).</summary>
    internal static async Task<VmStatus?> LiveStatus(HostedVm vm)
    {
        if (vm.Ended is not null || vm.Actor.IsNobody()) return null;
        try { return await vm.Actor.Ask<VmStatus>(new GetVmStatus(), TimeSpan.FromSeconds(1)); }
        catch (Exception e) when (e is AskTimeoutException or TaskCanceledException) { return null; }
    }

    public static JsonObject Summary(HostedVm vm, VmStatus? live = null) => new()
    {
        ["id"] = vm.Id,
        ["name"] = vm.Name,
        ["state"] = vm.State,
        ["vcpus"] = vm.Vcpus,
        ["memory"] = vm.MemoryBytes,
        ["uptimeMs"] = Math.Round(vm.Duration.TotalMilliseconds),
        ["exits"] = vm.Ended is { } e ? e.Vcpus.Sum(v => v.Exits) : live?.Vcpus.Sum(v => v.Exits),
    };

    public static JsonObject Details(HostedVm vm, VmStatus? live = null)
    {
        var o = Summary(vm, live);
        o["createdAt"] = vm.CreatedAt.ToString("O");
        o["endedAt"] = vm.EndedAt?.ToString("O");
        o["consoleBytes"] = vm.Console.Total;
        if (vm.MigratedTo is { } to) o["migratedTo"] = new JsonObject { ["address"] = to.Address, ["id"] = to.Id };
        if (vm.Fleet is { } fleet) o["fleet"] = fleet.DeepClone();
        if (vm.Ended is { } e)
        {
            o["end"] = new JsonObject { ["reason"] = e.Reason.ToString(), ["detail"] = e.Detail, ["exitStatus"] = vm.ExitStatus };
            o["restarts"] = e.ActorFailures.Count(f => f.Restarted);
            o["vcpuDetails"] = new JsonArray(e.Vcpus.Select(v => (JsonNode)new JsonObject
            {
                ["id"] = v.VcpuId, ["thread"] = v.ThreadName, ["nativeThreadId"] = v.NativeThreadId, ["exits"] = v.Exits,
                ["halted"] = v.Halted, ["restarts"] = v.Restarts,
                ["exitsByReason"] = new JsonObject(v.ExitsByReason.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value))),
            }).ToArray());
            o["actorFailures"] = new JsonArray(e.ActorFailures.Select(f => (JsonNode)new JsonObject
            {
                ["actor"] = f.Actor, ["exception"] = f.Exception, ["message"] = f.Message, ["restarted"] = f.Restarted,
            }).ToArray());
            if (e.Failure is { } g) o["failure"] = g.Describe();
        }
        else
        {
            o["end"] = null;
            if (live is not null)
                o["vcpuDetails"] = new JsonArray(live.Vcpus.Select(v => (JsonNode)new JsonObject
                {
                    ["id"] = v.VcpuId, ["thread"] = v.ThreadName, ["nativeThreadId"] = v.NativeThreadId, ["exits"] = v.Exits,
                }).ToArray());
        }
        return o;
    }
}

using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Akka.Actor;
using KvmActors.Host.Serve;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace KvmActors.Host.Fleet;

/// <summary>
/// The fleet's endpoints beyond the first part's (<see cref="FleetApi"/>): draining a node, a node's metrics, and the
/// per-VM calls that reach the owner through the region from any node: report, snapshot, delete, console input (the
/// owner's own API answers them), migrate (always the fleet's move, on every node), and following a console, which
/// long-polls the owner and so goes on across a migration.
/// </summary>
public static class FleetRouting
{
    public const string Follow = "fleetfollow";

    private sealed record MoveBody(string? To);

    public static void Map(WebApplication app)
    {
        static FleetRuntime Fleet(HttpContext c) => c.RequestServices.GetRequiredService<FleetRuntime>();
        var remote = FleetApi.RemoteVm;

        app.MapPost("/nodes/{node}/drain", (HttpContext c, string node) => Drain(Fleet(c), node));
        app.MapPost("/nodes/{node}/undrain", async Task<IResult> (HttpContext c, string node) =>
        {
            var fleet = Fleet(c);
            if (KvmHost(fleet, node, out var member) is { } problem) return problem;
            return await AskNode<FleetAnswer>(fleet, member!, new UndrainNode(), fleet.Settings.AskTimeout) is { } answer
                ? new FleetApi.AnswerResult(answer, null)
                : Results.Problem(statusCode: 504, title: "Node did not answer", detail: $"{member!.Address} did not answer the undrain within {fleet.Settings.AskTimeout}");
        });
        app.MapGet("/nodes/{node}/metrics", async Task<IResult> (HttpContext c, string node) =>
        {
            var fleet = Fleet(c);
            if (KvmHost(fleet, node, out var member) is { } problem) return problem;
            return await AskNode<NodeMetrics>(fleet, member!, new GetNodeMetrics(), fleet.Settings.ListTimeout) is { } m
                ? Results.Text(m.Text, "text/plain; version=0.0.4; charset=utf-8")
                : Results.Problem(statusCode: 504, title: "Node did not answer", detail: $"{member!.Address} did not send its metrics within {fleet.Settings.ListTimeout}");
        });

        // Every VM of the fleet: a migration moves it to another node of the fleet (keeping its id), never out of it.
        app.MapPost("/vms/{id}/migrate", async Task<IResult> (HttpContext c, string id) =>
        {
            MoveBody? body = null;
            try
            {
                if (c.Request.ContentLength is not 0)
                    body = await JsonSerializer.DeserializeAsync<MoveBody>(c.Request.Body, new JsonSerializerOptions(JsonSerializerDefaults.Web), c.RequestAborted);
            }
            catch (JsonException e) { return Results.Problem(statusCode: 400, title: "Bad JSON", detail: e.Message); }
            if (body?.To is { } to && FleetNodes.Resolve(Fleet(c), to) is null)
                return Results.Problem(statusCode: 400, title: "No such node",
                    detail: $"\"to\": '{to}' is not a member of the cluster: in the fleet a VM moves to a node, named by its address or HOST:PORT (or leave \"to\" out: the placement chooses)");
            var settings = Fleet(c).Settings.Drain;
            return await FleetApi.Call(c, id, FleetVmCallKind.Migrate, body: body?.To is { } t ? Encoding.UTF8.GetBytes(t) : null,
                extra: settings.Timeout + settings.HandoffTimeout);
        }).WithOrder(-1);

        app.MapGet($"/vms/{{id:{remote}}}/report", (HttpContext c, string id) => FleetApi.Call(c, id, FleetVmCallKind.Report)).WithOrder(-1);
        app.MapDelete($"/vms/{{id:{remote}}}", (HttpContext c, string id) => FleetApi.Call(c, id, FleetVmCallKind.Delete)).WithOrder(-1);
        app.MapPost($"/vms/{{id:{remote}}}/snapshot", async (HttpContext c, string id) =>
            await FleetApi.Call(c, id, FleetVmCallKind.Snapshot, body: await Body(c), extra: TimeSpan.FromSeconds(60))).WithOrder(-1);
        app.MapPost($"/vms/{{id:{remote}}}/console", async (HttpContext c, string id) =>
            await FleetApi.Call(c, id, FleetVmCallKind.ConsoleInput, body: await Body(c))).WithOrder(-1);
        // Before the local and the remote console routes: a follow through any node (the owner's too) survives a migration.
        app.MapGet($"/vms/{{id:{Follow}}}/console", FollowAsync).WithOrder(-2);
    }

    private static async Task<byte[]> Body(HttpContext c)
    {
        using var ms = new MemoryStream();
        await c.Request.Body.CopyToAsync(ms, c.RequestAborted); // bounded by Kestrel's request body limit
        return ms.ToArray();
    }

    private static async Task<IResult> Drain(FleetRuntime fleet, string node)
    {
        if (KvmHost(fleet, node, out var member) is { } problem) return problem;
        var settings = fleet.Settings.Drain;
        var timeout = settings.Timeout + settings.HandoffTimeout + fleet.Settings.AskTimeout;
        return await AskNode<FleetAnswer>(fleet, member!, new DrainNode(), timeout) is { } answer
            ? new FleetApi.AnswerResult(answer, null)
            : Results.Problem(statusCode: 504, title: "Drain did not answer", detail: $"{member!.Address} did not answer the drain within {timeout}");
    }

    /// <summary>The kvm-host member <paramref name="node"/> names, or the problem why there is none.</summary>
    private static IResult? KvmHost(FleetRuntime fleet, string node, out Akka.Cluster.Member? member)
    {
        member = FleetNodes.Resolve(fleet, node);
        if (member is null)
            return Results.Problem(statusCode: 404, title: "No such node", detail: $"'{node}' is not a member of the cluster (give its address or HOST:PORT, as GET /nodes lists them)");
        if (!member.HasRole(FleetOptions.KvmHostRole))
            return Results.Problem(statusCode: 409, title: "Not a kvm-host node", detail: $"{member.Address} runs no VMs (role {string.Join(", ", member.Roles)})");
        return null;
    }

    private static async Task<T?> AskNode<T>(FleetRuntime fleet, Akka.Cluster.Member member, object message, TimeSpan timeout) where T : class
    {
        try { return await fleet.System.ActorSelection(new RootActorPath(member.Address) / "user" / FleetDrainActor.Name).Ask<T>(message, timeout); }
        catch (Exception e) when (e is AskTimeoutException or ActorNotFoundException) { return null; }
    }

    /// <summary>GET /nodes with each kvm-host node's metrics (its GET /metrics samples, by name and labels).</summary>
    public static async Task<JsonArray> WithMetrics(FleetRuntime fleet, JsonArray nodes)
    {
        var hosts = fleet.KvmHosts.ToDictionary(m => m.Address.ToString());
        await Task.WhenAll(nodes.Select(async n =>
        {
            if (n is not JsonObject o || !hosts.TryGetValue((string)o["address"]!, out var member)) return;
            if (await AskNode<NodeMetrics>(fleet, member, new GetNodeMetrics(), fleet.Settings.ListTimeout) is { } m) o["metrics"] = Samples(m.Text);
        }));
        return nodes;
    }

    /// <summary>The samples of a Prometheus text exposition: <c>name{labels}</c> → value.</summary>
    public static JsonObject Samples(string text)
    {
        var o = new JsonObject();
        foreach (var line in text.Split('\n'))
        {
            if (line.Length == 0 || line[0] == '#') continue;
            var space = line.LastIndexOf(' ');
            if (space > 0 && double.TryParse(line[(space + 1)..], NumberStyles.Float, CultureInfo.InvariantCulture, out var v)) o[line[..space]] = v;
        }
        return o;
    }

    /// <summary>
    /// A console followed through the fleet: long polls to the owner (each waits up to follow-poll for bytes) until the
    /// VM has ended and every byte went out. Across a migration the polls reach the VM on its new node, and its
    /// console's offsets go on from the old node's, so the stream has no gap and no repeat.
    /// </summary>
    private static async Task FollowAsync(HttpContext c, string id)
    {
        var fleet = c.RequestServices.GetRequiredService<FleetRuntime>();
        long offset = 0;
        if (c.Request.Query["offset"] is { Count: > 0 } o && (!long.TryParse(o[0], out offset) || offset < 0))
        {
            await Results.Problem(statusCode: 400, title: "Bad offset", detail: $"offset '{o[0]}' is not a non-negative integer").ExecuteAsync(c);
            return;
        }
        if (!await FleetApi.Known(fleet, id))
        {
            await Results.Problem(statusCode: 404, title: "No such VM", detail: $"no VM with id '{id}'").ExecuteAsync(c);
            return;
        }
        var poll = fleet.Settings.Drain.FollowPoll;
        var next = offset;
        var started = false;
        var misses = 0;
        try
        {
            while (!c.RequestAborted.IsCancellationRequested)
            {
                var answer = await FleetApi.Ask(fleet, new FleetVmCall(id, FleetVmCallKind.ConsoleWait, next), poll);
                if (answer.Status != 200)
                {
                    if (!started)
                    {
                        await new FleetApi.AnswerResult(answer, null).ExecuteAsync(c);
                        return;
                    }
                    // Between two nodes for a moment (a move's last steps) or an owner slow to answer: ask again, a bounded number of times.
                    if (++misses > 50) break;
                    await Task.Delay(100, c.RequestAborted);
                    continue;
                }
                misses = 0;
                if (!started)
                {
                    c.Response.ContentType = "application/octet-stream";
                    c.Response.Headers[ServeApi.ConsoleFirstOffsetHeader] = answer.Headers[ServeApi.ConsoleFirstOffsetHeader];
                    c.Response.Headers[ServeApi.ConsoleStartHeader] = answer.Headers[ServeApi.ConsoleStartHeader];
                    c.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpResponseBodyFeature>()?.DisableBuffering();
                    await c.Response.StartAsync(c.RequestAborted);
                    await c.Response.Body.FlushAsync(c.RequestAborted); // the headers go out now, not with the first byte
                    started = true;
                }
                if (answer.Body.Length > 0)
                {
                    await c.Response.Body.WriteAsync(answer.Body, c.RequestAborted);
                    await c.Response.Body.FlushAsync(c.RequestAborted);
                }
                next = long.Parse(answer.Headers[ServeApi.ConsoleNextOffsetHeader], CultureInfo.InvariantCulture);
                if (answer.Headers[FleetVmCalls.ConsoleClosedHeader] == "true") break;
            }
        }
        catch (OperationCanceledException) { }
    }
}

/// <summary>Matches a console request with ?follow=true, so the fleet's follow takes it for any VM, local or not.</summary>
public sealed class FollowConstraint : IRouteConstraint
{
    public bool Match(HttpContext? httpContext, IRouter? route, string routeKey, RouteValueDictionary values, RouteDirection routeDirection) =>
        httpContext?.Request.Query["follow"] is { Count: > 0 } f && f[0] is "true" or "1" or "yes";
}

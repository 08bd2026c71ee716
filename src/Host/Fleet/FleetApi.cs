using System.Text.Json.Nodes;
using Akka.Actor;
using Akka.Cluster;
using KvmActors.Host.Serve;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace KvmActors.Host.Fleet;

/// <summary>
/// The API's fleet endpoints (serve --cluster only). POST /vms places the VM and creates it through the shard
/// region; GET /vms lists every node's VMs; GET /nodes lists the members. The per-VM calls (show, pause, resume,
/// stop, console by offset) of a VM that is not on this node go to its owner through the region: their routes match
/// only ids not hosted here (<see cref="RemoteVmConstraint"/>), so a local VM is answered by the local API as without --cluster.
/// The other calls (report, snapshot, migrate, delete, console input and follow) and the drain: <see cref="FleetRouting"/>.
/// The endpoints have order -1 so that they win over the local API's of the same route.
/// </summary>
public static class FleetApi
{
    public const string RemoteVm = "fleetremote";

    public static void Map(WebApplication app)
    {
        if (app.Services.GetService<FleetRuntime>() is null) return;
        static FleetRuntime Fleet(HttpContext c) => c.RequestServices.GetRequiredService<FleetRuntime>();
        static VmHost Host(HttpContext c) => c.RequestServices.GetRequiredService<VmHost>();

        app.MapPost("/vms", async Task<IResult> (HttpContext c) => await Create(Fleet(c), Host(c), c.Request)).WithOrder(-1);

        app.MapGet("/vms", async Task<IResult> (HttpContext c) => Results.Json(await Fleet(c).ListVmsAsync())).WithOrder(-1);

        app.MapGet("/nodes", async Task<IResult> (HttpContext c) => Results.Json(await FleetRouting.WithMetrics(Fleet(c), await Nodes(Fleet(c)))));
        FleetRouting.Map(app); // drain, node metrics, and the other per-VM calls through any node (FleetRouting.cs)

        app.MapGet($"/vms/{{id:{RemoteVm}}}", (HttpContext c, string id) => Call(c, id, FleetVmCallKind.Show)).WithOrder(-1);
        app.MapPost($"/vms/{{id:{RemoteVm}}}/pause", (HttpContext c, string id) => Call(c, id, FleetVmCallKind.Pause)).WithOrder(-1);
        app.MapPost($"/vms/{{id:{RemoteVm}}}/resume", (HttpContext c, string id) => Call(c, id, FleetVmCallKind.Resume)).WithOrder(-1);
        app.MapPost($"/vms/{{id:{RemoteVm}}}/stop", (HttpContext c, string id) => Call(c, id, FleetVmCallKind.Stop)).WithOrder(-1);
        app.MapGet($"/vms/{{id:{RemoteVm}}}/console", async (HttpContext c, string id) =>
        {
            long offset = 0;
            if (c.Request.Query["offset"] is { Count: > 0 } o && (!long.TryParse(o[0], out offset) || offset < 0))
                return Results.Problem(statusCode: 400, title: "Bad offset", detail: $"offset '{o[0]}' is not a non-negative integer");
            return await Call(c, id, FleetVmCallKind.Console, offset); // ?follow=true goes to FleetRouting's follow
        }).WithOrder(-1);
    }

    private static async Task<IResult> Create(FleetRuntime fleet, VmHost host, HttpRequest http)
    {
        GuestRequest request;
        try { request = await ServeApi.ReadCreate(http); }
        catch (ProblemException p) { return Problem(p); }
        if (request.Restore is not null)
            return Results.Problem(statusCode: 501, title: "Restore not in the fleet yet",
                detail: "serve --cluster places new guests only: restore a snapshot on a serve without --cluster");
        await fleet.PlacementGate.WaitAsync(http.HttpContext.RequestAborted);
        try
        {
            var placements = await fleet.ReadAsync(FleetKeys.Placements, majority: false);
            var id = fleet.NewVmId(placements);
            int vcpus;
            ulong memory;
            try
            {
                // Checked here (paths, syntax, size) so that a bad guest is refused before it is placed; its owner prepares it again.
                var spec = GuestPreparation.Prepare(request, host.GuestDir, id);
                (vcpus, memory) = (spec.Machine.VcpuCount, VmHost.RamOf(spec));
            }
            catch (ProblemException p) { return Problem(p); }
            var placement = FleetPlacement.Choose(await fleet.CapacityAsync(majority: true), vcpus, memory);
            if (placement.Node is not { } node)
                return Results.Problem(statusCode: placement.Status, title: placement.Title, detail: placement.Reason,
                    extensions: new Dictionary<string, object?> { ["reason"] = placement.Reason });
            await fleet.WriteAsync(FleetKeys.Placements, id, node);
            var answer = await Ask(fleet, new CreateFleetVm(id, request.Config, request.Name, [.. request.Sets]), host.Settings.RequestTimeout);
            return new AnswerResult(answer, answer.Status == 201 ? $"/vms/{id}" : null);
        }
        finally { fleet.PlacementGate.Release(); }
    }

    internal static async Task<IResult> Call(HttpContext c, string id, FleetVmCallKind kind, long offset = 0, byte[]? body = null, TimeSpan extra = default)
    {
        var fleet = c.RequestServices.GetRequiredService<FleetRuntime>();
        if (!await Known(fleet, id)) return Results.Problem(statusCode: 404, title: "No such VM", detail: $"no VM with id '{id}'");
        return new AnswerResult(await Ask(fleet, new FleetVmCall(id, kind, offset, body, c.Request.ContentType), extra), null);
    }

    /// <summary>Only ids the fleet placed go to the region: another id would start an entity (and a shard) for nothing.</summary>
    internal static async Task<bool> Known(FleetRuntime fleet, string id) =>
        (await fleet.ReadAsync(FleetKeys.Placements, majority: false)).TryGetValue(id, out var here) ? here != FleetRecords.Forgotten
        : (await fleet.ReadAsync(FleetKeys.Placements, majority: true)).TryGetValue(id, out var there) && there != FleetRecords.Forgotten;

    internal static async Task<FleetAnswer> Ask(FleetRuntime fleet, IFleetVmMessage message, TimeSpan extra)
    {
        var timeout = fleet.Settings.AskTimeout + extra;
        try { return await fleet.Region.Ask<FleetAnswer>(message, timeout); }
        catch (AskTimeoutException)
        {
            return FleetAnswer.Problem(504, "Owner did not answer", $"VM {message.VmId}: its node did not answer within {timeout}");
        }
    }

    private static async Task<JsonArray> Nodes(FleetRuntime fleet)
    {
        var state = fleet.Cluster.State;
        var published = await fleet.ReadAsync(FleetKeys.Capacity, majority: false);
        return new JsonArray(state.Members.OrderBy(m => m.Address.ToString(), StringComparer.Ordinal).Select(m =>
        {
            var address = m.Address.ToString();
            var o = new JsonObject
            {
                ["address"] = address,
                ["roles"] = new JsonArray(m.Roles.Order(StringComparer.Ordinal).Select(r => (JsonNode)r).ToArray()),
                ["status"] = m.Status.ToString(),
                ["reachable"] = !state.Unreachable.Contains(m),
                ["self"] = address == fleet.SelfAddress,
            };
            if (published.TryGetValue(address, out var json) && NodeCapacity.FromJson(json) is { } cap)
            {
                o["vms"] = cap.Vms;
                o["maxVms"] = cap.MaxVms;
                o["freeVcpus"] = cap.FreeVcpus;
                o["maxVcpus"] = cap.MaxVcpus;
                o["freeMemory"] = cap.FreeMemory;
                o["maxMemory"] = cap.MaxMemory;
                o["draining"] = cap.Draining;
            }
            return (JsonNode)o;
        }).ToArray());
    }

    private static IResult Problem(ProblemException p) =>
        Results.Problem(statusCode: p.Status, title: p.Title, detail: p.Message, extensions: p.Extensions);

    /// <summary>Writes an owner node's answer as it is.</summary>
    internal sealed class AnswerResult(FleetAnswer answer, string? location) : IResult
    {
        public async Task ExecuteAsync(HttpContext c)
        {
            c.Response.StatusCode = answer.Status;
            if (answer.ContentType.Length > 0) c.Response.ContentType = answer.ContentType;
            foreach (var (k, v) in answer.Headers) c.Response.Headers[k] = v;
            if (location is not null) c.Response.Headers.Location = location;
            if (answer.Body.Length > 0) await c.Response.Body.WriteAsync(answer.Body); // a 204 (DELETE) may carry no body at all
        }
    }
}

/// <summary>Matches a VM id this node does not host, so the fleet's route takes it and the local API's keeps the rest.</summary>
public sealed class RemoteVmConstraint : IRouteConstraint
{
    public bool Match(HttpContext? httpContext, IRouter? route, string routeKey, RouteValueDictionary values, RouteDirection routeDirection) =>
        httpContext?.RequestServices.GetService<VmHost>() is { } host && values.TryGetValue(routeKey, out var id) && id is string s
        && host.Find(s) is null or { MigratedTo: not null }; // a copy that migrated away: the VM is elsewhere now
}

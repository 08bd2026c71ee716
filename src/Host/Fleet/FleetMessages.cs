using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Akka.Cluster.Sharding;
using KvmActors.Host.Serve;

namespace KvmActors.Host.Fleet;

/// <summary>A message for one VM's entity: it carries the VM id, which is also the shard id (one shard per VM).</summary>
public interface IFleetVmMessage
{
    string VmId { get; }
}

/// <summary>The first message of a VM's entity: create the VM with this id on the node the entity landed on.</summary>
public sealed record CreateFleetVm(string VmId, string Config, string? Name, string[] Sets) : IFleetVmMessage;

public enum FleetVmCallKind { Show, Pause, Resume, Stop, Console, Report, Snapshot, Migrate, Delete, ConsoleInput, ConsoleWait }

/// <summary>
/// An API call for a VM, answered by its entity on the owner node (<see cref="Offset"/>: the console's;
/// <see cref="Body"/> and <see cref="ContentType"/>: the request's, for snapshot, migrate and console input).
/// The kinds after <see cref="FleetVmCallKind.Console"/> are answered by the owner's <see cref="FleetDrainActor"/>.
/// </summary>
public sealed record FleetVmCall(string VmId, FleetVmCallKind Kind, long Offset = 0, byte[]? Body = null, string? ContentType = null) : IFleetVmMessage;

/// <summary>An HTTP answer made on the owner node: status, body and headers, as its local API would give them.</summary>
public sealed record FleetAnswer(int Status, string ContentType, byte[] Body, Dictionary<string, string> Headers)
{
    public static FleetAnswer Json(int status, JsonNode body) =>
        new(status, "application/json; charset=utf-8", Encoding.UTF8.GetBytes(body.ToJsonString()), []);

    /// <summary>An RFC 7807 problem, as ASP.NET Core's Results.Problem writes it.</summary>
    public static FleetAnswer Problem(int status, string title, string detail, IDictionary<string, object?>? extensions = null)
    {
        var o = new JsonObject { ["title"] = title, ["status"] = status, ["detail"] = detail };
        foreach (var (k, v) in extensions ?? new Dictionary<string, object?>()) o[k] = JsonSerializer.SerializeToNode(v);
        return new(status, "application/problem+json", Encoding.UTF8.GetBytes(o.ToJsonString()), []);
    }

    public static FleetAnswer Problem(ProblemException p) => Problem(p.Status, p.Title, p.Message, p.Extensions);
}

/// <summary>Asks a node's fleet actor for its VMs.</summary>
public sealed record ListNodeVms;

/// <summary>A node's VMs: a JSON array of the local API's VM summaries.</summary>
public sealed record NodeVms(string Node, string Json);

/// <summary>Asks the local fleet actor to publish this node's free capacity now (answered once a majority has it).</summary>
public sealed record PublishCapacity;

public sealed record CapacityPublished;

/// <summary>A kvm-host node's limits and what is free of them, as published in Distributed Data.</summary>
/// <param name="Draining">The node is being drained (or was): no placement chooses it.</param>
public sealed record NodeCapacity(int Vms, int MaxVms, int FreeVcpus, int MaxVcpus, ulong FreeMemory, ulong MaxMemory, bool Draining = false)
{
    public string ToJson() => JsonSerializer.Serialize(this);
    public static NodeCapacity? FromJson(string json) => JsonSerializer.Deserialize<NodeCapacity>(json);
}

/// <summary>Entity id = shard id = VM id: every VM is its own shard, so the allocation strategy places each VM.</summary>
public sealed class FleetMessageExtractor : IMessageExtractor
{
    public string? EntityId(object message) => message is IFleetVmMessage m ? m.VmId : null;
    public object? EntityMessage(object message) => message;
    public string? ShardId(object message) => message is IFleetVmMessage m ? m.VmId : null;
    public string ShardId(string entityId, object? messageHint = null) => entityId;
}

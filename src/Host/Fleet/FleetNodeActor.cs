using System.Text.Json.Nodes;
using Akka.Actor;
using Akka.Cluster;
using KvmActors.Host.Serve;

namespace KvmActors.Host.Fleet;

/// <summary>
/// Each node's fleet actor (/user/fleet): publishes this kvm-host node's free capacity to Distributed Data on
/// every VM create and end (and every publish-interval), and lists this node's VMs for GET /vms on any node.
/// </summary>
public sealed class FleetNodeActor : ReceiveActor, IWithTimers
{
    public const string Name = "fleet";
    private sealed record Tick;

    private readonly Func<VmHost> _resolveHost;
    private readonly FleetSettings _settings;
    private readonly bool _hostsVms;
    private VmHost? _host;

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(Func<VmHost> host, FleetSettings settings, bool hostsVms) =>
        Akka.Actor.Props.Create(() => new FleetNodeActor(host, settings, hostsVms));

    public FleetNodeActor(Func<VmHost> host, FleetSettings settings, bool hostsVms)
    {
        _resolveHost = host;
        _settings = settings;
        _hostsVms = hostsVms;
        Receive<Tick>(_ => Publish(null));
        Receive<PublishCapacity>(_ => Publish(Sender));
        Receive<ListNodeVms>(_ =>
        {
            var vms = Host.All.Where(v => v.MigratedTo is null).Select(v => (JsonNode)ServeApi.Summary(v)).ToArray(); // a migrated copy: listed where it went
            Sender.Tell(new NodeVms(Cluster.Get(Context.System).SelfAddress.ToString(), new JsonArray(vms).ToJsonString()));
        });
    }

    // The VmHost is built by the host's services after the actor system: resolved on first use.
    private VmHost Host
    {
        get
        {
            if (_host is not null) return _host;
            _host = _resolveHost();
            var self = Self;
            if (_hostsVms) _host.LiveChanged += () => self.Tell(new PublishCapacity());
            return _host;
        }
    }

    protected override void PreStart()
    {
        if (_hostsVms) Timers.StartPeriodicTimer("publish", new Tick(), TimeSpan.Zero, _settings.PublishInterval);
    }

    private void Publish(IActorRef? replyTo)
    {
        if (!_hostsVms) { replyTo?.Tell(new CapacityPublished()); return; }
        var node = Cluster.Get(Context.System).SelfAddress.ToString();
        var written = FleetRuntime.Write(Context.System, FleetKeys.Capacity, node, FleetRuntime.CapacityOf(Host).ToJson(), _settings.ConsistencyTimeout);
        if (replyTo is not null) written.ContinueWith(_ => new CapacityPublished(), TaskScheduler.Default).PipeTo(replyTo);
    }
}

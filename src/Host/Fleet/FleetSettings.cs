namespace KvmActors.Host.Fleet;

/// <summary>The fleet's timeouts, from <c>kvmactors.fleet</c> (reference.conf, then the host file): one binding for all of them.</summary>
public sealed record FleetSettings(TimeSpan AskTimeout, TimeSpan ConsistencyTimeout, TimeSpan ListTimeout, TimeSpan PublishInterval, FleetDrainSettings Drain)
{
    public static FleetSettings From(Akka.Configuration.Config config)
    {
        var c = config.GetConfig("kvmactors.fleet");
        return new FleetSettings(c.GetTimeSpan("ask-timeout"), c.GetTimeSpan("consistency-timeout"), c.GetTimeSpan("list-timeout"),
            c.GetTimeSpan("publish-interval"),
            new FleetDrainSettings(c.GetTimeSpan("drain.timeout"), c.GetTimeSpan("drain.handoff-timeout"), c.GetTimeSpan("drain.on-exit-timeout"),
                c.GetTimeSpan("follow-poll")));
    }
}

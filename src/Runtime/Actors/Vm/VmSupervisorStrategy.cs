using Akka.Actor;
using KvmActors.Runtime.Config;

namespace KvmActors.Runtime.Vm;

/// <summary>
/// Supervision of the VM's children by kind (vCPU or device), as <c>guest.supervision</c> says: restart
/// within a budget of restarts per time window, stop the VM, or escalate. Every failure is recorded so
/// the end report names the actor and its exception. A child that cannot be created or started (its
/// constructor or PreStart threw: a bad device option, a vCPU thread that cannot be prepared) is not
/// restarted — it would fail the same way — but ends the VM at once with the reason (status 2 for a
/// config error, else 1).
/// </summary>
internal sealed class VmSupervisorStrategy(
    Func<IActorRef, SupervisionPolicy> policyFor,
    Action<IActorRef, Exception, bool, string> record)
    : OneForOneStrategy(_ => Directive.Restart, true)
{
    public override void ProcessFailure(IActorContext context, bool restart, IActorRef child, Exception cause,
        Akka.Actor.Internal.ChildRestartStats stats, IReadOnlyCollection<Akka.Actor.Internal.ChildRestartStats> children)
    {
        if (StartFailure(cause) is { } start)
        {
            record(child, start.Error, false, start.Status == 2 ? "config error" : "failed to start");
            context.Stop(child);
            context.Self.Tell(new ChildStartFailed(child.Path.Name, start.Error, start.Status));
            return;
        }
        var policy = policyFor(child);
        switch (policy.Directive)
        {
            case SupervisionDirective.Restart when stats.RequestRestartPermission(policy.MaxRestarts, (int)policy.Within.TotalMilliseconds):
                record(child, cause, true, "restarted");
                RestartChild(child, cause, suspendFirst: false);
                break;
            case SupervisionDirective.Restart:
                record(child, cause, false, $"exceeded {policy.MaxRestarts} restart(s) within {policy.Within.TotalSeconds:0.###}s");
                context.Stop(child);
                break;
            case SupervisionDirective.Escalate:
                record(child, cause, false, "escalated");
                context.Stop(child);
                break;
            default:
                record(child, cause, false, "directive stop-vm");
                context.Stop(child);
                break;
        }
    }

    /// <summary>
    /// A failure that no restart can cure: a config error anywhere in the chain (a device whose options are
    /// wrong fails the same way at every restart), or any exception while the actor was being created.
    /// </summary>
    private static (Exception Error, int Status)? StartFailure(Exception cause)
    {
        for (var e = cause; e is not null; e = e.InnerException)
            if (e is KvmActorsException { Kind: ErrorKind.Config } config) return (config, 2);
        if (cause is ActorInitializationException init)
            return (init.InnerException ?? init, 1);
        return null;
    }
}

/// <summary>A child failed at creation (or start): the VM ends with <see cref="ExitStatus"/>.</summary>
internal sealed record ChildStartFailed(string Actor, Exception Error, int ExitStatus);

/// <summary>The VM actor fails with this when a child's failure is escalated.</summary>
public sealed class VmChildFailedException(string actor, Exception cause)
    : Exception($"{actor} failed: {cause.Message}", cause);

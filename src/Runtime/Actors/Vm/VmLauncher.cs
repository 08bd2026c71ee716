using Akka.Actor;
using KvmActors.Runtime.Config;

namespace KvmActors.Runtime.Vm;

/// <summary>Starts a VM actor from outside an actor (the CLI, the benchmark) and exposes its end as a task.</summary>
public static class VmLauncher
{
    public sealed record Launched(IActorRef Vm, Task<VmEnded> Ended);

    /// <param name="prebuilt">See <see cref="VmActor.Props"/>.</param>
    public static Launched Launch(ActorSystem system, GuestSpec spec, VmSettings settings, string? name = null, Snapshot.VmRestore? restore = null,
        Machine? prebuilt = null)
    {
        var done = new TaskCompletionSource<VmEnded>(TaskCreationOptions.RunContinuationsAsynchronously);
        var owner = system.ActorOf(Props.Create(() => new EndListener(done)));
        var vm = name is null
            ? system.ActorOf(VmActor.Props(spec, owner, settings, restore, prebuilt))
            : system.ActorOf(VmActor.Props(spec, owner, settings, restore, prebuilt), name);
        return new Launched(vm, done.Task);
    }

    /// <summary>Completes the task with the VM's <see cref="VmEnded"/>, then stops.</summary>
    private sealed class EndListener : ReceiveActor
    {
        public EndListener(TaskCompletionSource<VmEnded> done)
        {
            Receive<VmEnded>(e =>
            {
                done.TrySetResult(e);
                Context.Stop(Self);
            });
        }
    }
}

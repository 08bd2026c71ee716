using Akka.Actor;
using KvmActors.Runtime.Config;
using KvmActors.Runtime.Vm;
using KvmActors.Sdk;

namespace KvmActors.Host.Bench;

/// <summary>
/// The "actors" variant: the same guest through the real runtime — <see cref="VmLauncher"/>, the VM actor,
/// one pinned vCPU actor per vCPU, port routing, the uart-16550 actor (sink null) — in one actor system
/// shared by every round.
/// </summary>
public static class ActorRunner
{
    public sealed record Result(long ComExits, TimeSpan Elapsed, TimeSpan Cpu, long FastReads = 0, long SlowReads = 0, long WaitedReads = 0);

    public static async Task<Result> RunAsync(ActorSystem system, VmSettings settings, GuestSpec spec, string runId, TimeSpan timeout)
    {
        var marks = BenchMarks.Register(runId, spec.Machine.VcpuCount);
        try
        {
            var (vm, ended) = VmLauncher.Launch(system, spec, settings);
            if (await Task.WhenAny(ended, Task.Delay(timeout)) != ended)
            {
                vm.Tell(new StopVm("benchmark timeout"));
                await ended;
                throw new TimeoutException($"actor run of {spec.Name} did not end within {timeout}");
            }
            var result = ended.Result;
            if (result.Reason != VmEndReason.Halted)
                throw new InvalidOperationException($"actor run of {spec.Name} ended {result.Reason}: {result.Detail}");
            if (!marks.Complete) throw new InvalidOperationException($"actor run of {spec.Name}: a vCPU did not write both markers");
            long com = result.Vcpus.Sum(v => v.ExitsByPort.Where(p => p.Key is >= BenchGuests.ComData and <= BenchGuests.ComData + 7).Sum(p => p.Value));
            var (fast, slow) = marks.Com1Path?.ReadCounts ?? (0, 0);
            return new Result(com, marks.Elapsed, marks.Cpu, fast, slow, marks.Com1Path?.WaitedReads ?? 0);
        }
        finally
        {
            BenchMarks.Take(runId);
        }
    }
}

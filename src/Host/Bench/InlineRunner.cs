using KvmActors.Devices.Uart16550;
using KvmActors.Runtime.Config;
using KvmActors.Runtime.Kvm;
using KvmActors.Runtime.Vcpu;
using KvmActors.Runtime.Vm;
using KvmActors.Sdk;

namespace KvmActors.Host.Bench;

/// <summary>
/// The "inline" variant: the guest built by the same <see cref="Machine"/> code, driven by a plain loop per
/// vCPU on a dedicated thread that handles each exit where it happens, as a hand-written VMM does: no
/// actors, no messages. COM1 is the same <see cref="Uart16550"/> register model the UART actor wraps, behind
/// a lock (the big-lock model of a classic VMM), with its output dropped like sink null. Its threads run at the
/// nice value the runtime gives its vCPU threads (kvmactors.vcpu.thread-nice), so that on a shared machine both
/// variants compete for the CPU alike and the comparison is of the exit path, not of the scheduler's weights.
/// </summary>
public static class InlineRunner
{
    public sealed record Result(long ComExits, TimeSpan Elapsed, TimeSpan Cpu);

    public static Result Run(GuestSpec spec, string kvmDevice, int threadNice, int kickSignal = 0)
    {
        using var machine = Machine.Create(spec.Machine, kvmDevice);
        var uart = new Uart16550();
        uart.Transmitted += _ => { };
        var marks = new BenchMarks(machine.Vcpus.Count);
        var comExits = new long[machine.Vcpus.Count];
        var errors = new Exception?[machine.Vcpus.Count];
        using var gate = new ManualResetEventSlim(false);

        var threads = machine.Vcpus.Select((vcpu, i) => new Thread(() =>
        {
            try
            {
                VcpuKick.LowerThreadPriority(threadNice);
                if (kickSignal > 0) VcpuKick.PrepareThread(vcpu, kickSignal); // --ablation inline-sigmask: KVM_RUN swaps the mask
                gate.Wait();
                comExits[i] = Loop(vcpu, uart, marks);
            }
            catch (Exception e) { errors[i] = e; }
        }) { Name = $"inline-vcpu-{i}", IsBackground = true }).ToList();
        foreach (var t in threads) t.Start();
        gate.Set();
        foreach (var t in threads) t.Join();

        if (errors.FirstOrDefault(e => e is not null) is { } error) throw new InvalidOperationException($"inline run failed: {error.Message}", error);
        if (!marks.Complete) throw new InvalidOperationException("inline run: a vCPU did not write both markers");
        return new Result(comExits.Sum(), marks.Elapsed, marks.Cpu);
    }

    /// <summary>KVM_RUN until HLT; every exit handled inline. Returns the number of COM1 exits.</summary>
    private static long Loop(KvmVcpu vcpu, Uart16550 uart, BenchMarks marks)
    {
        long com = 0;
        var timing = new ExitTiming.Probe(); // the same probe the vCPU actor uses, when the bench turns it on
        var timed = ExitTiming.Enabled;
        for (;;)
        {
            if (timed) timing.BeforeRun();
            var err = vcpu.Run();
            if (timed) timing.AfterRun();
            if (err != 0) continue; // EINTR: nobody kicks this loop, but a stray signal just re-enters
            var exit = vcpu.Exit; // the same typed view the vCPU actor decodes exits with
            var reason = exit.Reason;
            if (reason == KvmExitReason.Hlt)
            {
                timing.Flush();
                return com;
            }
            if (reason != KvmExitReason.Io)
                throw new InvalidOperationException($"vcpu {vcpu.Id}: unexpected exit {reason}");

            var io = exit.Io;
            var isIn = io.IsIn;
            var port = io.Port;
            var data = io.Data;
            if (port >= BenchGuests.ComData && port <= BenchGuests.ComData + 7)
            {
                com++;
                lock (uart)
                {
                    if (isIn) data[0] = (byte)uart.Read(port - BenchGuests.ComData);
                    else uart.Write(port - BenchGuests.ComData, data[0]);
                }
            }
            else if (port == BenchGuests.MarkerPort && !isIn)
            {
                marks.Mark(vcpu.Id, data[0]);
            }
            else
            {
                throw new InvalidOperationException($"vcpu {vcpu.Id}: unexpected {(isIn ? "IN from" : "OUT to")} port 0x{port:x}");
            }
        }
    }
}

using System.Diagnostics;
using Akka.Actor;
using Akka.Configuration;
using KvmActors.Devices.Uart16550;
using KvmActors.Runtime.Devices;
using KvmActors.Sdk;

namespace KvmActors.Host.Bench;

/// <summary>
/// <c>kvmactors bench --ablation</c>, without KVM: what each layer of the actors' OUT and IN path costs on its own,
/// on one thread that runs devices inline as a vCPU thread does, caches hot: the 16550 model behind a lock (the
/// inline loop's whole device work), a Tell to an actor that does nothing (Akka: envelope, mailbox, dispatcher),
/// to a <see cref="DeviceActor"/> with no registers (the SDK's dispatch), to the uart-16550 actor (its model and
/// read snapshot), and an IN answered from the UART's read snapshot. In the exit loop every layer runs with caches
/// and TLB cooled by KVM_RUN, so each costs more there; the differences are what this locates.
/// </summary>
public static class ExitPathLayers
{
    private sealed class Nothing : UntypedActor
    {
        protected override void OnReceive(object message) { }
    }

    private sealed class NoRegisters(DeviceContext context) : DeviceActor(context);

    public static IReadOnlyList<(string Layer, double Nanoseconds)> Measure(ActorSystem system, int iterations = 200_000)
    {
        DeviceContext Context(string name) => new()
        {
            Name = name, Type = "uart-16550", Vm = system.DeadLetters, Machine = new MachineInfo(1, 1 << 20, []),
            Options = new DeviceOptions(ConfigurationFactory.ParseString("sink = null"), $"guest.devices.{name}.options", "<bench>", Path.GetTempPath()),
        };
        var uartContext = Context("layers-uart");
        var bareContext = Context("layers-bare");
        var uart = system.ActorOf(Runtime.Devices.DeviceRegistry.PropsFor(typeof(Uart16550Device), uartContext).WithDispatcher(DeviceDispatcher.ConfigPath));
        var bare = system.ActorOf(Props.Create(() => new NoRegisters(bareContext)).WithDispatcher(DeviceDispatcher.ConfigPath));
        var nothing = system.ActorOf(Props.Create(() => new Nothing()).WithDispatcher(DeviceDispatcher.ConfigPath));
        foreach (var a in new[] { uart, bare, nothing }) a.Ask<ActorIdentity>(new Identify(0), TimeSpan.FromSeconds(10)).Wait();

        var results = new List<(string, double)>();
        var t = new Thread(() =>
        {
            DeviceDispatcher.RunDevicesOnThisThread();
            var model = new Uart16550();
            model.Transmitted += _ => { };
            var write = new PortWrite(BenchGuests.ComData, 0, 1, 'x', 0);
            var uartPath = DeviceReadPath.Of(uart, 1);
            var barePath = DeviceReadPath.Of(bare, 1);
            var lsr = BenchGuests.ComLsr - BenchGuests.ComData;
            var sink = 0UL;
            (string, Action)[] layers =
            [
                ("OUT: 16550 model behind a lock (the inline loop)", () => { lock (model) model.Write(0, (byte)'x'); }),
                ("OUT: Tell to an actor that does nothing", () => nothing.Tell(write, ActorRefs.NoSender)),
                ("OUT: Tell to a DeviceActor with no registers", () => { barePath.WriteSending(0); bare.Tell(write, ActorRefs.NoSender); }),
                ("OUT: Tell to the uart-16550 actor", () => { uartPath.WriteSending(0); uart.Tell(write, ActorRefs.NoSender); }),
                ("IN:  16550 model behind a lock (the inline loop)", () => { lock (model) sink += model.Read(lsr); }),
                ("IN:  uart-16550 read snapshot", () => { uartPath.TryRead(0, (ulong)lsr, 1, out var v); sink += v; }),
            ];
            foreach (var (name, body) in layers)
            {
                var best = double.MaxValue;
                for (var rep = 0; rep < 5; rep++)
                {
                    var start = Stopwatch.GetTimestamp();
                    for (var i = 0; i < iterations; i++) body();
                    best = Math.Min(best, Stopwatch.GetElapsedTime(start).TotalNanoseconds / iterations);
                }
                results.Add((name, best));
            }
            GC.KeepAlive(sink);
        }) { Name = "bench-layers", IsBackground = true };
        t.Start();
        t.Join();
        foreach (var a in new[] { uart, bare, nothing }) system.Stop(a);
        return results;
    }
}

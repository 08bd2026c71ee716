using Akka.Actor;
using Akka.Configuration;
using Akka.TestKit.Xunit2;
using KvmActors.Runtime.Devices;
using KvmActors.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace KvmActors.Tests.Snapshot;

/// <summary>One guest access in a probe: a write, or a read whose value the probe collects.</summary>
public abstract record Access
{
    public static Access In(ushort port, int size = 1) => new PortIn(port, size);
    public static Access Out(ushort port, uint value, int size = 1) => new PortOut(port, value, size);
    public static Access MmioIn(ulong address, int size) => new MmioLoad(address, size);
    public static Access MmioOut(ulong address, ulong value, int size) => new MmioStore(address, value, size);
}

public sealed record PortIn(ushort Port, int Size) : Access;
public sealed record PortOut(ushort Port, uint Value, int Size) : Access;
public sealed record MmioLoad(ulong Address, int Size) : Access;
public sealed record MmioStore(ulong Address, ulong Value, int Size) : Access;

/// <summary>Device actors made the way the runtime makes them (a <see cref="DeviceContext"/> and the registry's Props), and the snapshot messages.</summary>
public abstract class DeviceStateKit(ITestOutputHelper output) : TestKit((ActorSystem?)null, output)
{
    private long _seq;

    protected DeviceContext Context(string name, string type, string options = "", PortRange[]? ports = null, MmioRange[]? mmio = null) => new()
    {
        Name = name,
        Type = type,
        Options = new DeviceOptions(ConfigurationFactory.ParseString(options), $"guest.devices.{name}.options", "test.conf", Path.GetTempPath()),
        Ports = ports ?? [],
        Mmio = mmio ?? [],
        Vm = CreateTestProbe().Ref,
        Machine = new MachineInfo(1, 1 << 20, []),
    };

    protected IActorRef Create(DeviceContext context, Type? deviceType = null)
    {
        var type = deviceType ?? new DeviceRegistry(BuiltInDevices.Assemblies, []).Resolve(context.Type)!;
        return Sys.ActorOf(DeviceRegistry.PropsFor(type, context));
    }

    protected DeviceState? Save(IActorRef device, string name)
    {
        device.Tell(SaveDeviceState.Instance, TestActor);
        var saved = ExpectMsg<DeviceStateSaved>();
        Assert.Equal(name, saved.Device);
        return saved.State;
    }

    /// <summary>Restores and returns the device's answer's error (null: restored).</summary>
    protected string? Restore(IActorRef device, DeviceState state)
    {
        device.Tell(new RestoreDeviceState(state), TestActor);
        return ExpectMsg<DeviceStateRestored>().Error;
    }

    /// <summary>Runs the accesses in order against the device (ranges are the context's: offsets from the first range that holds the address) and returns what the reads gave.</summary>
    protected List<ulong> Run(IActorRef device, DeviceContext context, IEnumerable<Access> accesses)
    {
        var values = new List<ulong>();
        foreach (var a in accesses)
        {
            object message = a switch
            {
                PortIn r => new PortRead(r.Port, PortOffset(context, r.Port), r.Size, 0, ++_seq),
                PortOut w => new PortWrite(w.Port, PortOffset(context, w.Port), w.Size, w.Value, 0),
                MmioLoad r => new MmioRead(r.Address, MmioOffset(context, r.Address), r.Size, 0, ++_seq),
                MmioStore w => new MmioWrite(w.Address, MmioOffset(context, w.Address), w.Size, w.Value, 0),
                _ => throw new ArgumentException($"unknown access {a}"),
            };
            device.Tell(message, TestActor);
            if (a is PortIn or MmioLoad) values.Add(ExpectMsg<ReadCompleted>(m => m.Seq == _seq).Value);
        }
        return values;
    }

    private static ushort PortOffset(DeviceContext c, ushort port) => (ushort)(port - c.Ports.First(r => r.First <= port && port <= r.Last).First);
    private static ulong MmioOffset(DeviceContext c, ulong address) => address - c.Mmio.First(r => r.First <= address && address <= r.Last).First;
}

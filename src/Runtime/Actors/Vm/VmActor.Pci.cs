using Akka.Actor;
using Akka.Event;
using KvmActors.Runtime.Bus;
using KvmActors.Runtime.Config;
using KvmActors.Sdk;

namespace KvmActors.Runtime.Vm;

/// <summary>
/// The VM moved device ranges (a guest moved a PCI BAR): every vCPU routes by these buses from its next exit on.
/// The vCPU whose configuration write caused it gets this before its write's answer, so it never runs on with the old ones.
/// </summary>
public sealed record RoutingChanged(PortBus Ports, MmioBus Mmio);

// PCI: the bus is laid out before the devices exist (PciLayout); afterwards the host bridge reports BAR moves
// (PciBarsMapped) and the VM routes each device's BAR ranges where they are now: the buses are rebuilt from the
// config's fixed ranges plus every device's current BARs and handed to the vCPUs in a message, never shared mutably.
public sealed partial class VmActor
{
    private readonly Dictionary<string, IActorRef> _deviceByName = new();
    private readonly List<PortBus.Entry> _fixedPorts = new();
    private readonly List<MmioBus.Entry> _fixedMmio = new();
    private readonly Dictionary<string, IReadOnlyList<PciBarMapping>> _barRoutes = new();

    private IReadOnlyList<PciFunction> LayOutPci(IEnumerable<(DeviceSpec Spec, Type Type)> devices) =>
        PciLayout.Lay(devices.Select(d => (d.Spec, Declaration: PciLayout.Declaration(d.Type, d.Spec.Options)))
            .Where(d => d.Declaration is not null).Select(d => (d.Spec, d.Declaration!)), _spec.Pci, _spec.SourceFile);

    private static IReadOnlyList<PciBarMapping> PciBarsOf(PciFunction f) =>
        f.Declaration.Bars.Select(b => new PciBarMapping(b.Index, b.Kind, f.BarAddresses[b.Index], b.Size)).ToList();

    private void RebuildBuses()
    {
        var ports = _fixedPorts.ToList();
        var mmio = _fixedMmio.ToList();
        foreach (var (name, bars) in _barRoutes)
        {
            var device = _deviceByName[name];
            foreach (var bar in bars)
            {
                if (bar.Kind == PciBarKind.Io) ports.Add(new PortBus.Entry(name, new PortRange((ushort)bar.Address, (ushort)bar.Last), device));
                else mmio.Add(new MmioBus.Entry(name, new MmioRange(bar.Address, bar.Last), device));
            }
        }
        _ports = PortBus.Build(ports);
        _mmio = MmioBus.Build(mmio);
    }

    private void OnPciBarsMapped(PciBarsMapped moved)
    {
        if (_ports is not null && _mmio is not null && _deviceByName.TryGetValue(moved.DeviceName, out var device))
        {
            // A BAR placed over another device's range (or another BAR) is not routed: as on a real bus the
            // outcome is undefined, and here the earlier claim keeps its addresses.
            var others = _fixedPorts.Select(e => (Io: true, First: (ulong)e.Range.First, Last: (ulong)e.Range.Last))
                .Concat(_fixedMmio.Select(e => (Io: false, e.Range.First, e.Range.Last)))
                .Concat(_barRoutes.Where(r => r.Key != moved.DeviceName)
                    .SelectMany(r => r.Value.Select(b => (Io: b.Kind == PciBarKind.Io, First: b.Address, b.Last))))
                .ToList();
            var routed = new List<PciBarMapping>();
            foreach (var bar in moved.Bars)
            {
                var io = bar.Kind == PciBarKind.Io;
                if (others.Any(o => o.Io == io && o.First <= bar.Last && bar.Address <= o.Last))
                    _log.Info("VM '{0}': BAR {1} of '{2}' at 0x{3:x}-0x{4:x} overlaps another device: not routed", _spec.Name, bar.Bar, moved.DeviceName, bar.Address, bar.Last);
                else routed.Add(bar);
            }
            _barRoutes[moved.DeviceName] = routed;
            device.Tell(moved with { Bars = routed, Answer = null }); // before any vCPU can route to the new place
            RebuildBuses();
            var routing = new RoutingChanged(_ports, _mmio);
            foreach (var vcpu in _vcpuActors.Keys) vcpu.Tell(routing);
        }
        // After the RoutingChanged above (one sender, one receiver: in order), so the writer resumes on the new buses.
        if (moved.Answer is { } answer) answer.Vcpu.Tell(new ReadCompleted(answer.Seq, 0));
    }
}

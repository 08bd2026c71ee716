using System.Reflection;
using KvmActors.Runtime.Config;
using KvmActors.Sdk;

namespace KvmActors.Runtime.Vm;

/// <summary>Where the VM's firmware-like layout puts PCI BARs (<c>guest.pci.io-window</c>, <c>guest.pci.mmio-window</c>).</summary>
public sealed record PciWindows(PortRange Io, MmioRange Mmio)
{
    /// <summary>As SeaBIOS on QEMU's pc machine: I/O from 0xc000, memory below the IOAPIC at 0xfec00000.</summary>
    public static readonly PciWindows Default = new(new PortRange(0xc000, 0xffff), new MmioRange(0xc000_0000, 0xfebf_ffff));
}

/// <summary>
/// Lays out bus 0 before any device exists, as firmware would: each device whose class is a PCI device
/// (<see cref="IPciDevice"/>) gets the next slot from 1 in config order, each BAR the next address of its window
/// aligned to its size, and its interrupt pin the PC's PIRQ routing (IRQ 10, 10, 11, 11 by slot and pin, as SeaBIOS).
/// </summary>
public static class PciLayout
{
    private static readonly int[] PirqIrqs = [10, 10, 11, 11];

    /// <summary>The declaration of a PCI device class for these options, or null for a class that is not one.</summary>
    public static PciDeclaration? Declaration(Type deviceType, DeviceOptions options)
    {
        if (!typeof(IPciDevice).IsAssignableFrom(deviceType)) return null;
        var method = deviceType.GetInterfaceMap(typeof(IPciDevice)).TargetMethods.Single();
        try
        {
            return (PciDeclaration)method.Invoke(null, [options])!;
        }
        catch (TargetInvocationException e) when (e.InnerException is { } inner)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(inner).Throw();
            throw;
        }
    }

    public static IReadOnlyList<PciFunction> Lay(IEnumerable<(DeviceSpec Spec, PciDeclaration Declaration)> devices, PciWindows windows, string file)
    {
        var functions = new List<PciFunction>();
        ulong nextIo = windows.Io.First, nextMem = windows.Mmio.First;
        foreach (var (spec, decl) in devices)
        {
            var key = $"guest.devices.{spec.Name}";
            if (decl.Problems() is { Count: > 0 } problems)
                throw new ConfigException(file, $"{key}.type", $"'{spec.Type}' declares itself wrongly as a PCI device: {string.Join("; ", problems)}");
            if (spec.Ports.Count > 0 || spec.Mmio.Count > 0)
                throw new ConfigException(file, spec.Ports.Count > 0 ? $"{key}.ports" : $"{key}.mmio",
                    $"'{spec.Type}' is a PCI device: its BARs are its ranges (remove ports and mmio)");
            var slot = functions.Count + 1;
            if (slot > 31) throw new ConfigException(file, key, "more than 31 PCI devices: bus 0 has slots 1-31 (0 is the host bridge)");
            var addresses = new ulong[6];
            foreach (var bar in decl.Bars.OrderByDescending(b => b.Size))
            {
                ref var next = ref bar.IsIo ? ref nextIo : ref nextMem;
                var (first, last) = bar.IsIo ? ((ulong)windows.Io.First, (ulong)windows.Io.Last) : (windows.Mmio.First, windows.Mmio.Last);
                var at = (next + bar.Size - 1) & ~(bar.Size - 1);
                if (at < first || at + bar.Size - 1 > last)
                    throw new ConfigException(file, bar.IsIo ? "guest.pci.io-window" : "guest.pci.mmio-window",
                        $"no room for BAR {bar.Index} (0x{bar.Size:x} bytes) of device '{spec.Name}' in {(bar.IsIo ? windows.Io.ToString() : windows.Mmio.ToString())}");
                addresses[bar.Index] = at;
                next = at + bar.Size;
            }
            var irq = decl.InterruptPin == 0 ? 0 : PirqIrqs[(slot + decl.InterruptPin - 1) & 3];
            functions.Add(new PciFunction(slot, spec.Name, decl, addresses, irq));
        }
        return functions;
    }
}

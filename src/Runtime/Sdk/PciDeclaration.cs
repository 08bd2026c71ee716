using Akka.Actor;

namespace KvmActors.Sdk;

/// <summary>What a PCI base address register decodes: I/O ports, or memory below 4 GiB, or memory anywhere (two BAR slots).</summary>
public enum PciBarKind { Io, Mem32, Mem64 }

/// <summary>
/// One base address register a PCI device declares: its index (0-5; a <see cref="PciBarKind.Mem64"/> BAR takes
/// index and index + 1), its size (a power of two: at least 4 for I/O, at most 256; at least 16 for memory) and kind.
/// </summary>
public sealed record PciBar(int Index, ulong Size, PciBarKind Kind, bool Prefetchable = false)
{
    public bool IsIo => Kind == PciBarKind.Io;
}

/// <summary>
/// What a plug-in says to be a PCI device (function 0 of a slot on bus 0): its IDs, class code (base class,
/// sub-class, programming interface: <c>0x00ff00</c> is "unclassified, other"), BARs and interrupt pin
/// (0 none, 1-4 INTA#-INTD#). The host bridge gives it a slot and a configuration space from this.
/// </summary>
public sealed record PciDeclaration(ushort VendorId, ushort DeviceId, uint ClassCode, IReadOnlyList<PciBar> Bars, byte InterruptPin = 0)
{
    public byte Revision { get; init; }
    public ushort SubsystemVendorId { get; init; }
    public ushort SubsystemId { get; init; }
    /// <summary>
    /// An MSI capability (64-bit address, one vector, no per-vector masking) in the capability list at 0x40: the guest
    /// programs it, the device reads it (<see cref="PciFunction.Msi"/>) and signals through <see cref="DevicePlatform"/>.
    /// </summary>
    public bool Msi { get; init; }

    /// <summary>The declaration's mistakes, one line each (empty when it is sound); the VM refuses a device with any.</summary>
    public IReadOnlyList<string> Problems()
    {
        var problems = new List<string>();
        if (VendorId == 0xffff) problems.Add("vendor ID 0xffff means \"no device\"");
        if (InterruptPin > 4) problems.Add($"interrupt pin {InterruptPin}: 0 (none) or 1-4 (INTA#-INTD#)");
        if (ClassCode > 0xffffff) problems.Add($"class code 0x{ClassCode:x}: 24 bits");
        var used = new HashSet<int>();
        foreach (var bar in Bars)
        {
            var slots = bar.Kind == PciBarKind.Mem64 ? new[] { bar.Index, bar.Index + 1 } : [bar.Index];
            if (slots.Any(i => i is < 0 or > 5)) problems.Add($"BAR {bar.Index}: index 0-5 ({bar.Kind} takes {slots.Length})");
            else if (!slots.All(used.Add)) problems.Add($"BAR {bar.Index}: declared twice");
            var (min, max) = bar.Kind == PciBarKind.Io ? (4UL, 256UL) : (16UL, bar.Kind == PciBarKind.Mem32 ? 1UL << 31 : 1UL << 40);
            if (bar.Size < min || bar.Size > max || (bar.Size & (bar.Size - 1)) != 0)
                problems.Add($"BAR {bar.Index}: size 0x{bar.Size:x} is not a power of two in 0x{min:x}-0x{max:x}");
            if (bar.Prefetchable && bar.Kind == PciBarKind.Io) problems.Add($"BAR {bar.Index}: an I/O BAR cannot be prefetchable");
        }
        return problems;
    }
}

/// <summary>
/// A device actor class that is a PCI device implements this (a <see cref="PciDeviceActor"/> does): the VM asks the
/// class, before creating it, what it is, so the bus is laid out (slots, BAR addresses) before the guest runs.
/// </summary>
public interface IPciDevice
{
    /// <summary>The device's PCI identity and BARs for these options (throw a <see cref="ConfigException"/> for a bad option).</summary>
    static abstract PciDeclaration DeclarePci(DeviceOptions options);
}

/// <summary>
/// A PCI function on bus 0 as the VM laid it out: the device (by config name) in slot <paramref name="Slot"/>,
/// its declaration, and where firmware would have put each BAR (by BAR index; 0 for none), with I/O and memory
/// decoding on. <paramref name="Irq"/>: the IOAPIC/PIC line its interrupt pin is routed to (the interrupt line register).
/// </summary>
public sealed record PciFunction(int Slot, string DeviceName, PciDeclaration Declaration, IReadOnlyList<ulong> BarAddresses, int Irq)
{
    /// <summary>The PCI requester ID of this function (bus 0): what an IOMMU's tables and IRTE source IDs name it by.</summary>
    public ushort RequesterId => (ushort)(Slot << 3);

    /// <summary>
    /// The MSI capability as the guest last programmed it, published by the host bridge that owns the configuration
    /// space and read by the device when it interrupts. Shared rather than messaged because the vCPU waits for each
    /// configuration write (<c>WaitForWrites</c>): once it runs on, the device already sees the new value.
    /// </summary>
    public PciMsiSlot Msi { get; } = new();
}

/// <summary>What a function's MSI capability says now (enable, address, data).</summary>
public sealed record PciMsiConfig(bool Enabled, ulong Address, ushort Data);

/// <summary>The latest <see cref="PciMsiConfig"/> of one function; thread-safe (one writer, the host bridge).</summary>
public sealed class PciMsiSlot
{
    private volatile PciMsiConfig _current = new(false, 0, 0);
    public PciMsiConfig Current => _current;
    public void Publish(PciMsiConfig config) => _current = config;
}

/// <summary>Where one BAR of a device decodes now.</summary>
public readonly record struct PciBarMapping(int Bar, PciBarKind Kind, ulong Address, ulong Size)
{
    public ulong Last => Address + Size - 1;
}

/// <summary>
/// The host bridge tells the VM where a device's BARs decode now (only the BARs whose decoding is on and whose
/// address is set; empty: none). The VM routes those ranges to the device instead of the ones it had, tells the
/// device (a <see cref="PciDeviceActor"/> learns its BARs from it), then completes <paramref name="Answer"/>, the write the vCPU waits in
/// (<see cref="DeviceActor.DeferWriteCompletion"/>).
/// </summary>
public sealed record PciBarsMapped(string DeviceName, IReadOnlyList<PciBarMapping> Bars, PendingWrite? Answer = null);

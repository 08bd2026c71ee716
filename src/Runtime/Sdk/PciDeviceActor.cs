namespace KvmActors.Sdk;

/// <summary>
/// Base class for a PCI device plug-in: declare the device in a static <c>DeclarePci</c> (<see cref="IPciDevice"/>)
/// and the VM gives it a slot on the host bridge's bus 0 and a configuration space (IDs, command/status, BARs the
/// guest sizes and moves, interrupt line and pin). Guest accesses to a BAR arrive as <see cref="OnBarRead"/> and
/// <see cref="OnBarWrite"/> with the BAR index and the offset in it, wherever the guest put the BAR.
/// Config: give the device no <c>ports</c> or <c>mmio</c> (its BARs are its ranges) and add a <c>pci-host</c> device.
/// </summary>
public abstract class PciDeviceActor : DeviceActor
{
    protected PciDeviceActor(DeviceContext context) : base(context)
    {
        if (context.Pci is not { } pci)
            throw new InvalidOperationException(
                $"device '{context.Name}' ({GetType().Name}) has no PCI function: the VM gives one to a class that implements IPciDevice (a static DeclarePci)");
        // Where firmware put the BARs, until the host bridge says otherwise (kept across restarts in the carry).
        context.Carry.PciBars ??= pci.Declaration.Bars
            .Where(b => pci.BarAddresses[b.Index] != 0)
            .Select(b => new PciBarMapping(b.Index, b.Kind, pci.BarAddresses[b.Index], b.Size)).ToList();
    }

    /// <summary>This device's slot and declaration on the bus.</summary>
    protected PciFunction Pci => Device.Pci!;

    /// <summary>Where the BARs decode now.</summary>
    protected IReadOnlyList<PciBarMapping> Bars => Device.Carry.PciBars!;

    /// <summary>Bus-master read through the VM's IOMMU, if any (false: blocked or not memory; see <see cref="DevicePlatform.DmaRead"/>).</summary>
    protected bool DmaRead(ulong busAddress, Span<byte> into) =>
        Device.Platform?.DmaRead(Pci.RequesterId, busAddress, into) ?? throw new InvalidOperationException("no platform: DMA needs a VM");

    /// <summary>Bus-master write through the VM's IOMMU, if any.</summary>
    protected bool DmaWrite(ulong busAddress, ReadOnlySpan<byte> from) =>
        Device.Platform?.DmaWrite(Pci.RequesterId, busAddress, from) ?? throw new InvalidOperationException("no platform: DMA needs a VM");

    /// <summary>Whether the guest enabled this function's MSI (it has one: <see cref="PciDeclaration.Msi"/>).</summary>
    protected bool MsiEnabled => Pci.Msi.Current.Enabled;

    /// <summary>
    /// Signal the interrupt: the programmed MSI when enabled (false if blocked), else assert INTx on the line firmware
    /// routed the pin to. <see cref="LowerInterrupt"/> deasserts INTx.
    /// </summary>
    protected bool RaiseInterrupt()
    {
        var msi = Pci.Msi.Current;
        if (msi.Enabled)
            return Device.Platform?.SignalMsi(Pci.RequesterId, new MsiMessage(msi.Address, msi.Data)) == true;
        if (Pci.Declaration.InterruptPin == 0) return false;
        SetIrq(Pci.Irq, true);
        return true;
    }

    /// <summary>Deassert INTx (nothing to do for an MSI, which is an edge).</summary>
    protected void LowerInterrupt()
    {
        if (Pci.Declaration.InterruptPin != 0) SetIrq(Pci.Irq, false);
    }

    /// <summary>A guest read of <paramref name="size"/> bytes at <paramref name="offset"/> in BAR <paramref name="bar"/>. Default: all ones.</summary>
    protected virtual ulong OnBarRead(int bar, ulong offset, int size, DeviceAccess access) => access.AllOnes;

    /// <summary>A guest write to BAR <paramref name="bar"/>. Default: dropped.</summary>
    protected virtual void OnBarWrite(int bar, ulong offset, int size, ulong value, DeviceAccess access) { }

    /// <summary>Messages other than accesses and BAR moves.</summary>
    protected virtual void OnOtherMessage(object message) => Unhandled(message);

    protected sealed override ulong OnRead(DeviceAccess access) =>
        Find(access) is { } m ? OnBarRead(m.Bar, access.Address - m.Address, access.Size, access) : access.AllOnes;

    protected sealed override void OnWrite(DeviceAccess access, ulong value)
    {
        if (Find(access) is { } m) OnBarWrite(m.Bar, access.Address - m.Address, access.Size, value, access);
    }

    protected sealed override void OnMessage(object message)
    {
        if (message is PciBarsMapped moved) Device.Carry.PciBars = moved.Bars;
        else OnOtherMessage(message);
    }

    private PciBarMapping? Find(DeviceAccess access)
    {
        var io = access.Space == AddressSpace.Port;
        foreach (var m in Bars)
            if ((m.Kind == PciBarKind.Io) == io && access.Address >= m.Address && access.Address <= m.Last) return m;
        return null; // routed by a mapping already replaced: the BAR is no longer there
    }
}

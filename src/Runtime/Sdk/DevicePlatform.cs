namespace KvmActors.Sdk;

/// <summary>
/// An MSI as it travels to the local APICs: the address (0xfeeXXXXX; with bit 4 set, VT-d's remappable format) and
/// the data word (vector, delivery mode, trigger mode).
/// </summary>
public readonly record struct MsiMessage(ulong Address, uint Data)
{
    /// <summary>Bit 4 of the address: the interrupt-remapping (remappable) format, which only an IOMMU can decode.</summary>
    public bool Remappable => (Address & 0x10) != 0;
}

/// <summary>Guest-physical memory as a bus master sees it (no translation): what the runtime gives the platform.</summary>
public interface IPhysicalMemory
{
    /// <summary>Whether [address, address + length) is all RAM or ROM a device can reach.</summary>
    bool IsBacked(ulong address, ulong length);
    void Read(ulong address, Span<byte> into);
    void Write(ulong address, ReadOnlySpan<byte> from);
}

/// <summary>
/// The interrupt controller that owns the VM's IRQ lines when the kernel does not (a split irqchip): the userspace
/// IOAPIC. Called on the raising device's thread: implementations lock.
/// </summary>
public interface IInterruptLines
{
    void SetLine(int line, bool level);
    /// <summary>A local APIC accepted an EOI for <paramref name="vector"/> (KVM_EXIT_IOAPIC_EOI): level-triggered entries re-arm.</summary>
    void EndOfInterrupt(int vector);
}

/// <summary>One step of a DMA translation: where <paramref name="Length"/> bytes from the bus address lie in guest-physical memory.</summary>
public readonly record struct DmaTranslation(ulong PhysicalAddress, ulong Length);

/// <summary>
/// An IOMMU between bus masters and memory (and interrupts). A requester is a PCI requester ID
/// (bus &lt;&lt; 8 | device &lt;&lt; 3 | function). Called on the requesting device's thread: implementations lock.
/// </summary>
public interface IIommu
{
    /// <summary>
    /// The guest-physical address of bus address <paramref name="address"/> for <paramref name="requester"/> and the
    /// bytes contiguous from there (at least 1), or null: the access is blocked (the IOMMU records the fault).
    /// </summary>
    DmaTranslation? TranslateDma(ushort requester, ulong address, bool write);

    /// <summary>
    /// The interrupt <paramref name="msi"/> from <paramref name="requester"/> (null: the IOAPIC, which no table here gives
    /// a source ID) as it reaches the local APICs, or null: blocked (fault recorded).
    /// </summary>
    MsiMessage? RemapInterrupt(ushort? requester, MsiMessage msi);
}

/// <summary>
/// The VM's platform as devices see it, one per VM, handed to every device in <see cref="DeviceContext.Platform"/>:
/// the single place IRQ lines, MSIs and DMA go through. Lines reach KVM's irqchip (<c>irqchip = true</c>) or the
/// userspace IOAPIC that attached itself (<c>irqchip = split</c>); MSIs and the IOAPIC's messages pass the IOMMU's
/// interrupt remapping when one attached itself, then KVM_SIGNAL_MSI; DMA passes its translation, then memory.
/// Thread-safe: devices call it from their own threads.
/// </summary>
public sealed class DevicePlatform
{
    private readonly IPhysicalMemory _memory;
    private readonly Func<int, bool, bool>? _kernelLine;
    private readonly Func<MsiMessage, bool>? _signalMsi;
    private readonly Func<int, MsiMessage, bool>? _levelPin;
    private volatile IInterruptLines? _lines;
    private volatile IIommu? _iommu;

    /// <param name="memory">Guest-physical memory.</param>
    /// <param name="kernelLine">KVM_IRQ_LINE on KVM's whole irqchip (null: none, e.g. split or no irqchip).</param>
    /// <param name="signalMsi">KVM_SIGNAL_MSI (null without local APICs in the kernel).</param>
    /// <param name="splitIrqchip">Lines go to the attached <see cref="IInterruptLines"/>.</param>
    /// <param name="levelPin">
    /// Delivers a level-triggered IOAPIC message on its pin's GSI route, so the kernel reports its EOI
    /// (KVM_EXIT_IOAPIC_EOI → <see cref="EndOfInterrupt"/>); null: as any MSI (no EOI comes back).
    /// </param>
    public DevicePlatform(IPhysicalMemory memory, Func<int, bool, bool>? kernelLine, Func<MsiMessage, bool>? signalMsi, bool splitIrqchip,
        Func<int, MsiMessage, bool>? levelPin = null)
    {
        _levelPin = levelPin;
        _memory = memory;
        _kernelLine = kernelLine;
        _signalMsi = signalMsi;
        SplitIrqchip = splitIrqchip;
    }

    /// <summary>The local APICs are KVM's and the IOAPIC/PIC are devices.</summary>
    public bool SplitIrqchip { get; }

    /// <summary>Whether the VM has local APICs an MSI can reach.</summary>
    public bool CanSignalMsi => _signalMsi is not null;

    /// <summary>Whether lines reach an interrupt controller (the kernel's, or an attached userspace IOAPIC).</summary>
    public bool HasLines => _kernelLine is not null || (SplitIrqchip && _lines is not null);

    /// <summary>The userspace IOAPIC takes the lines (a split irqchip); a later attach replaces it (a restarted actor).</summary>
    public void AttachInterruptLines(IInterruptLines lines) => _lines = lines;

    /// <summary>An IOMMU sits between bus masters and memory from now on (a later attach replaces it).</summary>
    public void AttachIommu(IIommu iommu) => _iommu = iommu;

    public IIommu? Iommu => _iommu;

    /// <summary>Drive an IRQ line (ISA IRQ / IOAPIC pin); false when nothing takes it.</summary>
    public bool SetLine(int line, bool level)
    {
        if (_kernelLine is { } kernel) return kernel(line, level);
        if (SplitIrqchip && _lines is { } lines)
        {
            lines.SetLine(line, level);
            return true;
        }
        return false;
    }

    /// <summary>A local APIC's EOI for a vector the userspace IOAPIC delivered level-triggered (KVM_EXIT_IOAPIC_EOI).</summary>
    public void EndOfInterrupt(int vector) => _lines?.EndOfInterrupt(vector);

    /// <summary>
    /// A message-signalled interrupt from PCI requester <paramref name="requester"/>: remapped by the IOMMU when there
    /// is one, then sent to the local APICs. False when blocked or nothing took it.
    /// </summary>
    public bool SignalMsi(ushort requester, MsiMessage msi) => Deliver(requester, msi);

    /// <summary>
    /// An interrupt the interrupt-remapping hardware itself raises (an IOMMU's fault or invalidation event): straight
    /// to the local APICs, never remapped (as VT-d's event interrupts are not).
    /// </summary>
    public bool SignalUnremapped(MsiMessage msi) => _signalMsi?.Invoke(msi) == true;

    /// <summary>
    /// The message the IOAPIC built from pin <paramref name="pin"/>'s redirection entry: remapped like any other; a
    /// level-triggered result (data bit 15, after remapping: the IRTE's trigger mode) goes by the pin's GSI route so
    /// its EOI comes back.
    /// </summary>
    public bool SignalIoapicMessage(int pin, MsiMessage msi)
    {
        if (_signalMsi is not { } signal) return false;
        if (_iommu is { } iommu)
        {
            if (iommu.RemapInterrupt(null, msi) is not { } remapped) return false;
            msi = remapped;
        }
        return (msi.Data & 0x8000) != 0 && _levelPin is { } level ? level(pin, msi) : signal(msi);
    }

    private bool Deliver(ushort? requester, MsiMessage msi)
    {
        if (_signalMsi is not { } signal) return false;
        if (_iommu is { } iommu)
        {
            if (iommu.RemapInterrupt(requester, msi) is not { } remapped) return false;
            msi = remapped;
        }
        return signal(msi);
    }

    /// <summary>
    /// A bus master's read of <paramref name="into"/>.Length bytes at bus address <paramref name="address"/>: through the
    /// IOMMU when there is one. False (and <paramref name="into"/> all ones from the failed byte on, as a master abort
    /// reads) when a page is blocked or not memory.
    /// </summary>
    public bool DmaRead(ushort requester, ulong address, Span<byte> into)
    {
        var done = 0;
        while (done < into.Length)
        {
            if (Resolve(requester, address + (ulong)done, (ulong)(into.Length - done), write: false) is not { } piece)
            {
                into[done..].Fill(0xff);
                return false;
            }
            _memory.Read(piece.PhysicalAddress, into.Slice(done, (int)piece.Length));
            done += (int)piece.Length;
        }
        return true;
    }

    /// <summary>A bus master's write: through the IOMMU when there is one. False when a page is blocked (nothing from there on is written).</summary>
    public bool DmaWrite(ushort requester, ulong address, ReadOnlySpan<byte> from)
    {
        var done = 0;
        while (done < from.Length)
        {
            if (Resolve(requester, address + (ulong)done, (ulong)(from.Length - done), write: true) is not { } piece) return false;
            _memory.Write(piece.PhysicalAddress, from.Slice(done, (int)piece.Length));
            done += (int)piece.Length;
        }
        return true;
    }

    /// <summary>Guest-physical memory without translation (what an IOMMU reads its tables from).</summary>
    public IPhysicalMemory PhysicalMemory => _memory;

    private DmaTranslation? Resolve(ushort requester, ulong address, ulong remaining, bool write)
    {
        ulong physical, length;
        if (_iommu is { } iommu)
        {
            if (iommu.TranslateDma(requester, address, write) is not { } t) return null;
            (physical, length) = (t.PhysicalAddress, Math.Min(t.Length, remaining));
        }
        else
        {
            // Untranslated: page by page, so a buffer crossing into a hole fails where the hole starts.
            (physical, length) = (address, Math.Min(remaining, 4096 - (address & 4095)));
        }
        return _memory.IsBacked(physical, length) ? new DmaTranslation(physical, length) : null;
    }
}

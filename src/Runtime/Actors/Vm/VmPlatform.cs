using KvmActors.Runtime.Memory;
using KvmActors.Sdk;

namespace KvmActors.Runtime.Vm;

/// <summary>
/// The <see cref="DevicePlatform"/> of one machine: guest memory for DMA, KVM_IRQ_LINE with KVM's whole irqchip,
/// KVM_SIGNAL_MSI with local APICs in the kernel (whole or split irqchip).
/// </summary>
internal static class VmPlatform
{
    public static DevicePlatform For(Machine machine) => new(
        new Memory(machine.Memory),
        machine.HasIrqchip && !machine.SplitIrqchip ? (line, level) => machine.SetIrqLine(line, level) : null,
        machine.HasIrqchip ? msi => machine.SignalMsi(msi.Address, msi.Data) : null,
        machine.SplitIrqchip,
        machine.SplitIrqchip ? (pin, msi) => machine.DeliverLevelTriggered(pin, msi.Address, msi.Data) : null);

    /// <summary>Bus-master view of guest memory: RAM and ROM read, RAM written (a DMA write to ROM is dropped, as on a PC).</summary>
    private sealed class Memory(GuestMemory memory) : IPhysicalMemory
    {
        public bool IsBacked(ulong address, ulong length) => memory.IsBacked(address, length);

        public void Read(ulong address, Span<byte> into) => memory.Read(address, into);

        public void Write(ulong address, ReadOnlySpan<byte> from)
        {
            if (!memory.IsReadOnly(address)) memory.Write(address, from);
        }
    }
}

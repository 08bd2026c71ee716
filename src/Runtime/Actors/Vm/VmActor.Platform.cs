using KvmActors.Sdk;

namespace KvmActors.Runtime.Vm;

public sealed partial class VmActor
{
    // The devices' platform (lines, MSIs, DMA); the vCPUs hand it the split irqchip's IOAPIC EOIs.
    private DevicePlatform? _platform;
}

using KvmActors.Sdk;

namespace KvmActors.Devices.IntelIommu;

/// <summary>
/// <c>intel-iommu</c>: an Intel VT-d remapping unit (registers and remapping: <see cref="VtdModel"/>) over the VM's
/// bus masters. Give it the 4 KiB register page as its MMIO range (a Q35 puts it at <c>0xfed90000-0xfed90fff</c>).
/// Once created it sits between every PCI device's DMA and memory and between every interrupt message (MSI, the
/// userspace IOAPIC's) and the local APICs (<see cref="DevicePlatform.AttachIommu"/>): with translation or interrupt
/// remapping off (GSTS.TES/IRES) it passes them through.
/// </summary>
/// <remarks>
/// <para>Options: <c>intremap = true</c> (false: ECAP.IR clear, IRE cannot be set, interrupts pass untouched);
/// <c>eim = false</c> (true is an error: x2APIC interrupt remapping is not built).</para>
/// <para>Snapshot: the registers (<see cref="VtdState"/>, version 1).</para>
/// </remarks>
[DeviceType("intel-iommu")]
public sealed class IntelIommuDevice : DeviceActor
{
    private readonly VtdModel _model;

    public IntelIommuDevice(DeviceContext context) : base(context)
    {
        context.Options.RejectUnknown("intremap", "eim");
        var intremap = context.Options.GetBool("intremap", true);
        if (context.Options.GetBool("eim", false))
            throw context.Options.Error("eim", "extended interrupt mode (x2APIC destinations in IRTEs) is not built: use eim = false");
        if (context.Mmio.Count != 1 || context.Mmio[0].Last - context.Mmio[0].First + 1 != VtdModel.RegisterPageSize)
            throw new ConfigException(context.Options.File, $"guest.devices.{context.Name}.mmio",
                "intel-iommu takes one 4 KiB register page (e.g. \"0xfed90000-0xfed90fff\")");
        var platform = context.Platform ?? throw new InvalidOperationException("intel-iommu needs the VM's platform");
        _model = Kept(() => new VtdModel(platform.PhysicalMemory, msi => platform.SignalUnremapped(msi), intremap));
        platform.AttachIommu(_model);
    }

    protected override bool KeepsStateOnRestart => true;

    protected override ulong OnRead(DeviceAccess access) => _model.Read(access.Offset, access.Size);

    protected override void OnWrite(DeviceAccess access, ulong value) => _model.Write(access.Offset, access.Size, value);

    public const int StateVersion = 1;

    protected override DeviceState SaveState() => DeviceState.Of(Device.Type, StateVersion, _model.Save());

    protected override void RestoreState(DeviceState state)
    {
        state.ExpectVersion(StateVersion);
        _model.Restore(state.Read<VtdState>());
    }
}

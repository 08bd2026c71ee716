using KvmActors.Runtime.Config;
using KvmActors.Runtime.Devices;
using KvmActors.Runtime.Kvm;
using KvmActors.Runtime.Memory;

namespace KvmActors.Runtime.Vm;

/// <summary>
/// The kernel side of one VM, built from a guest spec: the /dev/kvm fd, the VM fd, guest memory with the
/// image loaded, and the vCPU fds in their entry state. Owned by the VM actor; <see cref="Dispose"/> releases
/// every fd and mapping. No actors here: the VM actor adds devices and vCPU actors around it.
/// </summary>
public sealed class Machine : IDisposable
{
    public GuestSpec Spec { get; }
    public KvmSystem Kvm { get; }
    public KvmVm Vm { get; }
    public GuestMemory Memory { get; }
    public IReadOnlyList<KvmVcpu> Vcpus => _vcpus;
    public MachineInfo Info { get; }

    private readonly List<KvmVcpu> _vcpus = new();

    private Machine(GuestSpec spec, KvmSystem kvm, KvmVm vm, GuestMemory memory)
    {
        Spec = spec;
        Kvm = kvm;
        Vm = vm;
        Memory = memory;
        Info = new MachineInfo(spec.VcpuCount, memory.RamSize, spec.Memory);
    }

    public static Machine Create(GuestSpec spec, string kvmDevice)
    {
        var kvm = KvmSystem.Open(kvmDevice);
        KvmVm? vm = null;
        GuestMemory? memory = null;
        try
        {
            vm = kvm.CreateVm();
            if (vm.CheckExtension(KvmCap.SetTssAddr) > 0)
                vm.SetTssAddr(0xfffb_d000); // needed for real mode on Intel VMX; harmless elsewhere
            memory = GuestMemory.Create(vm, spec.Memory);
            var machine = new Machine(spec, kvm, vm, memory);
            try
            {
                machine.LoadImage();
                for (var i = 0; i < spec.VcpuCount; i++)
                {
                    var vcpu = vm.CreateVcpu(i);
                    machine._vcpus.Add(vcpu);
                    CpuState.Apply(vcpu, spec, i);
                }
                return machine;
            }
            catch { machine.Dispose(); throw; }
        }
        catch when (memory is null)
        {
            vm?.Dispose();
            kvm.Dispose();
            throw;
        }
    }

    private void LoadImage()
    {
        var image = Spec.Image;
        if (!Memory.IsBacked(image.LoadAddress, (ulong)image.Bytes.Length))
            throw new ConfigException(Spec.SourceFile, "guest.image.load-address",
                $"image '{image.Origin}' ({image.Bytes.Length} bytes at 0x{image.LoadAddress:x}) does not fit in one memory region");
        Memory.Write(image.LoadAddress, image.Bytes);
    }

    /// <summary>Drive an interrupt line. Without an in-kernel irqchip there is nothing to drive: returns false.</summary>
    public bool SetIrqLine(int line, bool level) => false;

    public void Dispose()
    {
        foreach (var v in _vcpus) v.Dispose();
        _vcpus.Clear();
        Memory.Dispose();
        Vm.Dispose();
        Kvm.Dispose();
    }
}

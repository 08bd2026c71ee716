using System.Text;
using Iced.Intel;
using KvmActors.Runtime.Boot;
using KvmActors.Runtime.Kvm;
using KvmActors.Runtime.Memory;
using KvmActors.Runtime.Vm;
using KvmActors.Sdk;

namespace KvmActors.Tests.Boot;

/// <summary>
/// A bare VM made directly with the interop (no actors): /dev/kvm, one VM, guest memory, one vCPU with CPUID set.
/// <see cref="RunUntilHalt"/> loops KVM_RUN, collecting what the guest writes to port 0x3f8, until HLT.
/// </summary>
internal sealed unsafe class BootTestVm : IDisposable
{
    public const ushort OutPort = 0x3f8;
    public const ulong MiB = 1UL << 20;

    public KvmSystem Kvm { get; }
    public KvmVm Vm { get; }
    public GuestMemory Memory { get; }
    public KvmVcpu Vcpu { get; }
    public KvmPrivatePagesResult PrivatePages { get; }
    public KvmCpuidEntry2[] Cpuid { get; }

    private BootTestVm(KvmSystem kvm, KvmVm vm, GuestMemory memory, KvmVcpu vcpu, KvmPrivatePagesResult pages, KvmCpuidEntry2[] cpuid)
    {
        Kvm = kvm; Vm = vm; Memory = memory; Vcpu = vcpu; PrivatePages = pages; Cpuid = cpuid;
    }

    public static BootTestVm Create(ulong ramBytes = 2 * MiB, IEnumerable<MemoryRegionSpec>? extraRegions = null,
        int vcpuId = 0, IEnumerable<string>? maskedCpuid = null)
    {
        var regions = new List<MemoryRegionSpec> { new("ram", 0, ramBytes, false) };
        if (extraRegions is not null) regions.AddRange(extraRegions);
        KvmSystem? kvm = null; KvmVm? vm = null; GuestMemory? memory = null; KvmVcpu? vcpu = null;
        try
        {
            kvm = KvmSystem.Open();
            vm = kvm.CreateVm();
            var pages = KvmPrivatePages.Set(vm, regions);
            memory = GuestMemory.Create(vm, regions);
            vcpu = vm.CreateVcpu(vcpuId);
            var cpuid = CpuidSetup.Apply(vcpu, kvm.GetSupportedCpuid(), maskedCpuid);
            return new BootTestVm(kvm, vm, memory, vcpu, pages, cpuid);
        }
        catch
        {
            vcpu?.Dispose(); memory?.Dispose(); vm?.Dispose(); kvm?.Dispose();
            throw;
        }
    }

    /// <summary>Run until HLT; returns the bytes written to port 0x3f8. Any other exit (besides I/O) fails with a register dump.</summary>
    public byte[] RunUntilHalt(int maxExits = 100_000)
    {
        var (exit, output) = RunUntilStop(maxExits);
        if (exit != KvmExitReason.Hlt)
            throw new Xunit.Sdk.XunitException(
                $"unexpected exit {exit} after output \"{Encoding.Latin1.GetString(output)}\"{Environment.NewLine}" +
                RegisterDump.Format(Vcpu.GetRegs(), Vcpu.GetSregs()));
        return output;
    }

    /// <summary>Run, handling port I/O (OUT to 0x3f8 is collected, IN reads 0xff), until any other exit.</summary>
    public (KvmExitReason Exit, byte[] Output) RunUntilStop(int maxExits = 100_000)
    {
        var output = new List<byte>();
        for (var exits = 0; exits < maxExits; exits++)
        {
            if (Vcpu.Run() != 0) continue; // EINTR/EAGAIN: run again
            var exit = Vcpu.Exit;
            if (exit.Reason != KvmExitReason.Io) return (exit.Reason, output.ToArray());
            var io = exit.Io;
            if (io.IsOut && io.Port == OutPort) output.AddRange(io.Data.ToArray());
            else if (io.IsIn) io.Data.Fill(0xff);
        }
        throw new Xunit.Sdk.XunitException($"no stop within {maxExits} exits; output so far \"{Encoding.Latin1.GetString(output.ToArray())}\"");
    }

    public void Dispose()
    {
        Vcpu.Dispose();
        Memory.Dispose();
        Vm.Dispose();
        Kvm.Dispose();
    }

    /// <summary>Assemble with Iced at <paramref name="address"/>.</summary>
    public static byte[] Assemble(int bitness, ulong address, Action<Assembler> emit)
    {
        var a = new Assembler(bitness);
        emit(a);
        using var stream = new MemoryStream();
        a.Assemble(new StreamCodeWriter(stream), address);
        return stream.ToArray();
    }

    /// <summary>Emit "mov dx, 0x3f8; (mov al, b; out dx, al)*".</summary>
    public static void EmitOutBytes(Assembler a, ReadOnlySpan<byte> bytes)
    {
        a.mov(AssemblerRegisters.dx, OutPort);
        foreach (var b in bytes)
        {
            a.mov(AssemblerRegisters.al, b);
            a.@out(AssemblerRegisters.dx, AssemblerRegisters.al);
        }
    }
}

using Iced.Intel;
using KvmActors.Runtime.Boot;
using KvmActors.Runtime.Kvm;
using KvmActors.Runtime.Memory;
using KvmActors.Tests.Boot;
using static Iced.Intel.AssemblerRegisters;

namespace KvmActors.Tests.Snapshot;

/// <summary>Real-mode guests and bare VMs (with or without the in-kernel irqchip) for the snapshot ioctl tests.</summary>
internal static class KvmSnapshotGuests
{
    public const ulong Entry = 0x1000;

    /// <summary>Put the vCPU in real mode at 0000:<see cref="Entry"/> with SSE usable (CR4.OSFXSR), as a guest's own setup would.</summary>
    public static void EnterRealMode(KvmVcpu vcpu)
    {
        var s = vcpu.GetSregs();
        s.Cs.Base = 0; s.Cs.Selector = 0;
        s.Cr4 |= 1 << 9; // OSFXSR: SSE instructions allowed
        vcpu.SetSregs(s);
        var r = vcpu.GetRegs();
        r.Rip = Entry; r.Rflags = 2;
        vcpu.SetRegs(r);
    }

    public static byte[] Assemble(Action<Assembler> emit) => BootTestVm.Assemble(16, Entry, emit);

    /// <summary>"mov dx, 0x3f8; out dx, al".</summary>
    public static void OutAl(Assembler a)
    {
        a.mov(dx, BootTestVm.OutPort);
        a.@out(dx, al);
    }

    /// <summary>
    /// Run to the next exit that is not an OUT to another port than 0x3f8; the exit's I/O is left pending. A guest
    /// that never exits (on some software KVMs an instruction the emulator lacks faults into an empty IVT, and the
    /// guest then runs forever inside KVM_RUN) is kicked out after <paramref name="timeout"/> (default 20 s) and
    /// fails with its registers, instead of hanging the test run.
    /// </summary>
    public static KvmExitReason RunToExit(KvmVcpu vcpu, List<byte>? output = null, TimeSpan? timeout = null)
    {
        const int kickSignal = 40; // the runtime's default kvmactors.vcpu.kick-signal
        VcpuKick.PrepareThread(vcpu, kickSignal);
        var tid = VcpuKick.CurrentNativeThreadId();
        var timedOut = 0;
        using var watchdog = new Timer(_ => { Volatile.Write(ref timedOut, 1); VcpuKick.Kick(vcpu, tid, kickSignal); },
            null, timeout ?? TimeSpan.FromSeconds(20), Timeout.InfiniteTimeSpan);
        while (true)
        {
            if (vcpu.Run() != 0)
            {
                VcpuKick.Consume(vcpu, kickSignal);
                if (Volatile.Read(ref timedOut) == 1)
                {
                    var r = vcpu.GetRegs();
                    var sr = vcpu.GetSregs();
                    throw new TimeoutException($"the guest made no exit in {(timeout ?? TimeSpan.FromSeconds(20)).TotalSeconds} s: " +
                        $"cs:ip {sr.Cs.Selector:x4}:{r.Rip:x} rax {r.Rax:x} rflags {r.Rflags:x} cr0 {sr.Cr0:x} cr4 {sr.Cr4:x}");
                }
                continue;
            }
            var exit = vcpu.Exit;
            if (exit.Reason == KvmExitReason.Io && exit.Io is { IsOut: true, Port: BootTestVm.OutPort } io)
            {
                output?.AddRange(io.Data.ToArray());
                return KvmExitReason.Io;
            }
            if (exit.Reason != KvmExitReason.Io) return exit.Reason;
        }
    }
}

/// <summary>A bare VM with KVM_CREATE_IRQCHIP and KVM_CREATE_PIT2 (as Machine makes them) and one vCPU.</summary>
internal sealed class IrqchipTestVm : IDisposable
{
    public KvmSystem Kvm { get; }
    public KvmVm Vm { get; }
    public GuestMemory Memory { get; }
    public KvmVcpu Vcpu { get; }

    private IrqchipTestVm(KvmSystem kvm, KvmVm vm, GuestMemory memory, KvmVcpu vcpu) { Kvm = kvm; Vm = vm; Memory = memory; Vcpu = vcpu; }

    public static IrqchipTestVm Create()
    {
        var regions = new List<MemoryRegionSpec> { new("ram", 0, 2 * BootTestVm.MiB, false) };
        var kvm = KvmSystem.Open();
        KvmVm? vm = null; GuestMemory? memory = null;
        try
        {
            vm = kvm.CreateVm();
            KvmPrivatePages.Set(vm, regions);
            vm.CreateIrqchip();
            vm.CreatePit2();
            memory = GuestMemory.Create(vm, regions);
            var vcpu = vm.CreateVcpu(0);
            CpuidSetup.Apply(vcpu, kvm.GetSupportedCpuid(), null);
            return new IrqchipTestVm(kvm, vm, memory, vcpu);
        }
        catch { memory?.Dispose(); vm?.Dispose(); kvm.Dispose(); throw; }
    }

    public void Dispose() { Vcpu.Dispose(); Memory.Dispose(); Vm.Dispose(); Kvm.Dispose(); }
}

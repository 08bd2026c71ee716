using System.Runtime.InteropServices;
using Iced.Intel;
using KvmActors.Runtime.Kvm;
using KvmActors.Runtime.Snapshot;
using KvmActors.Tests.Boot;
using Xunit;
using Xunit.Abstractions;
using static Iced.Intel.AssemblerRegisters;

namespace KvmActors.Tests.Snapshot;

/// <summary>VcpuStateIo on real KVM: a vCPU's state moves to a vCPU of a second VM, which continues the guest.</summary>
public sealed class KvmVcpuStateTests(ITestOutputHelper output)
{
    private const ulong Pattern = 0x3000, Spill = 0x3010;
    private const uint SysenterEsp = 0x175; // IA32_SYSENTER_ESP: writable in real mode (KERNEL_GS_BASE faults there on some KVMs)
    private static readonly byte[] XmmPattern = Enumerable.Range(0, 16).Select(i => (byte)(0xa0 + i)).ToArray();

    // Part 1 loads xmm0 from memory, writes IA32_SYSENTER_ESP, sets ebx, and stops at an OUT of 'A'. Part 2 (run only
    // in the second VM) prints bl, xmm0's first and last byte (spilled to memory) and the MSR read back.
    private static byte[] Guest() => KvmSnapshotGuests.Assemble(a =>
    {
        a.movdqu(xmm0, __xmmword_ptr[Pattern]);
        a.mov(ecx, SysenterEsp);
        a.mov(eax, 0xdeadbeef);
        a.mov(edx, 0x1234);
        a.wrmsr();
        a.mov(ebx, 0x55667788);
        a.mov(al, (byte)'A');
        KvmSnapshotGuests.OutAl(a);
        // --- resumes here after the restore
        a.mov(al, bl);
        KvmSnapshotGuests.OutAl(a);
        a.movdqu(__xmmword_ptr[Spill], xmm0);
        a.mov(al, __byte_ptr[Spill]);
        KvmSnapshotGuests.OutAl(a);
        a.mov(al, __byte_ptr[Spill + 15]);
        KvmSnapshotGuests.OutAl(a);
        a.mov(ecx, SysenterEsp);
        a.rdmsr();
        a.mov(esi, edx);
        KvmSnapshotGuests.OutAl(a);
        a.mov(eax, esi);
        KvmSnapshotGuests.OutAl(a);
        a.hlt();
    });

    /// <summary>A VM whose guest ran part 1, stopped at the OUT, with that exit completed.</summary>
    private static BootTestVm RunPartOne()
    {
        var vm = BootTestVm.Create();
        try
        {
            vm.Memory.Write(KvmSnapshotGuests.Entry, Guest());
            vm.Memory.Write(Pattern, XmmPattern);
            KvmSnapshotGuests.EnterRealMode(vm.Vcpu);
            var printed = new List<byte>();
            Assert.Equal(KvmExitReason.Io, KvmSnapshotGuests.RunToExit(vm.Vcpu, printed));
            Assert.Equal("A"u8.ToArray(), printed);
            Assert.True(vm.Vcpu.CompletePendingExit());
            return vm;
        }
        catch { vm.Dispose(); throw; }
    }

    [KvmFact]
    public void A_captured_vcpu_applied_to_a_second_vm_continues_the_guest_with_its_registers_xmm_and_msrs()
    {
        using var first = RunPartOne();
        var saved = VcpuStateIo.Capture(first.Kvm, first.Vcpu, hasIrqchip: false);
        Assert.Equal(0x55667788UL, MemoryMarshal.Read<KvmRegs>(saved.Regs).Rbx);
        Assert.Contains(new MsrValue(SysenterEsp, 0x1234_deadbeefUL), saved.Msrs);
        output.WriteLine($"XSAVE area {saved.Xsave?.Length} bytes; {saved.Msrs.Count} MSRs captured of {first.Kvm.MsrIndexList.Count} listed");

        using var second = BootTestVm.Create();
        first.Memory.RegionBytes(0).CopyTo(second.Memory.RegionBytes(0));
        second.Memory.Write(Pattern, new byte[16]); // xmm0 can now come only from the restored state
        var refused = VcpuStateIo.Apply(second.Vcpu, saved);
        output.WriteLine($"MSRs refused on restore: {string.Join(", ", refused.Select(i => $"0x{i:x}={saved.Msrs.First(m => m.Index == i).Value:x}"))}");
        Assert.DoesNotContain(SysenterEsp, refused);

        var again = VcpuStateIo.Capture(second.Kvm, second.Vcpu, hasIrqchip: false);
        Assert.Equal(saved.Regs, again.Regs);
        Assert.Equal(saved.Sregs, again.Sregs);
        Assert.Equal(saved.MpState, again.MpState);
        Assert.Equal(saved.VcpuEvents, again.VcpuEvents);
        Assert.Equal(saved.Cpuid, again.Cpuid);
        Assert.Equal(saved.Xcrs, again.Xcrs);
        Assert.Equal(saved.DebugRegs, again.DebugRegs);
        // The legacy region (x87, MXCSR, XMM0-15) and the XSAVE header (XSTATE_BV) are what the guest had.
        Assert.NotNull(again.Xsave);
        Assert.Equal(saved.Xsave.AsSpan(0, 576).ToArray(), again.Xsave.AsSpan(0, 576).ToArray());
        Assert.Equal(XmmPattern, again.Xsave.AsSpan(160, 16).ToArray()); // XMM0 in the legacy region
        // Every MSR but the time-stamp counters (which moved on) reads back as saved.
        var tsc = new uint[] { 0x10, 0x3b };
        Assert.Equal(saved.Msrs.Where(m => !tsc.Contains(m.Index) && !refused.Contains(m.Index)),
            again.Msrs.Where(m => !tsc.Contains(m.Index) && !refused.Contains(m.Index)));

        var printed = new List<byte>();
        while (KvmSnapshotGuests.RunToExit(second.Vcpu, printed) == KvmExitReason.Io) { }
        Assert.Equal(KvmExitReason.Hlt, second.Vcpu.ExitReason);
        Assert.Equal(new byte[] { 0x88, XmmPattern[0], XmmPattern[15], 0xef, 0x34 }, printed);
    }

    [KvmFact]
    public void Apply_refuses_truncated_registers_before_touching_the_vcpu()
    {
        using var first = RunPartOne();
        var saved = VcpuStateIo.Capture(first.Kvm, first.Vcpu, hasIrqchip: false);
        using var second = BootTestVm.Create();
        var before = second.Vcpu.GetRegs();

        var regs = Assert.Throws<SnapshotFormatException>(() => VcpuStateIo.Apply(second.Vcpu, saved with { Regs = saved.Regs[..100] }));
        Assert.Contains("regs", regs.Message);
        Assert.Contains("100 bytes, expected 144", regs.Message);
        var sregs = Assert.Throws<SnapshotFormatException>(() => VcpuStateIo.Apply(second.Vcpu, saved with { Sregs = saved.Sregs[..311] }));
        Assert.Contains("sregs", sregs.Message);
        Assert.Throws<SnapshotFormatException>(() => VcpuStateIo.Apply(second.Vcpu, saved with { Xsave = saved.Xsave![..4000] }));
        Assert.Throws<SnapshotFormatException>(() => VcpuStateIo.Apply(second.Vcpu, saved with { VcpuEvents = [] }));
        Assert.Throws<SnapshotFormatException>(() => VcpuStateIo.Apply(second.Vcpu, saved with { Cpuid = saved.Cpuid[..^1] }));
        Assert.Equal(before.Rip, second.Vcpu.GetRegs().Rip); // the CPUID check threw before KVM_SET_REGS
        Assert.Equal(ErrorKind.Config, regs.Kind);
    }

    [KvmFact]
    public void Host_cpuid_passes_and_a_saved_feature_the_host_lacks_is_named()
    {
        using var vm = BootTestVm.Create();
        var supported = vm.Kvm.GetSupportedCpuid();
        Assert.Null(CpuidCompatibility.Check(supported, supported));
        var saved = VcpuStateIo.Capture(vm.Kvm, vm.Vcpu, hasIrqchip: false);
        Assert.Null(CpuidCompatibility.Check(VcpuStateIo.CpuidEntries(saved), supported));

        var entries = VcpuStateIo.CpuidEntries(saved);
        var i = Array.FindIndex(entries, e => e.Function == 7 && e.Index == 0);
        var host = supported.First(e => e.Function == 7 && e.Index == 0);
        var bit = Enumerable.Range(0, 32).First(b => (host.Ebx & (1u << b)) == 0);
        entries[i].Ebx |= 1u << bit;
        var reason = CpuidCompatibility.Check(entries, supported);
        output.WriteLine(reason);
        Assert.NotNull(reason);
        Assert.Contains("leaf 0x7.0 EBX", reason);
        Assert.Contains($"bit {bit}", reason);
    }
}

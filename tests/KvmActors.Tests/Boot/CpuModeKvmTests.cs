using System.Text;
using Iced.Intel;
using KvmActors.Runtime.Boot;
using KvmActors.Runtime.Kvm;
using KvmActors.Runtime.Memory;
using Xunit;
using Xunit.Abstractions;
using static Iced.Intel.AssemblerRegisters;

namespace KvmActors.Tests.Boot;

/// <summary>Each CPU mode on a real /dev/kvm: a tiny Iced-assembled guest writes bytes to port 0x3f8 and halts.</summary>
public sealed class CpuModeKvmTests(ITestOutputHelper output)
{
    private static string Text(byte[] b) => Encoding.ASCII.GetString(b);

    [KvmFact]
    public void Real_mode_guest_runs_with_zero_segments_and_real_mode_addressing()
    {
        using var vm = BootTestVm.Create();
        const ulong entry = 0x7c00;
        vm.Memory.Write(0x7e00, "seg"u8);
        var code = BootTestVm.Assemble(16, entry, a =>
        {
            BootTestVm.EmitOutBytes(a, "real:"u8);
            // DS = 0x07e0 addresses 0x7e00 through real-mode segmentation (base = selector * 16).
            a.mov(ax, 0x07e0);
            a.mov(ds, ax);
            a.xor(si, si);
            a.mov(cx, 3);
            var loop = a.CreateLabel();
            a.Label(ref loop);
            a.lodsb();
            a.@out(dx, al);
            a.loop(loop);
            a.hlt();
        });
        var image = ImageLoader.LoadFlat(vm.Memory, code, entry, CpuMode.Real);
        CpuSetup.Enter(vm.Vcpu, vm.Memory, CpuMode.Real, image.EntryPoint);

        var sregs = vm.Vcpu.GetSregs();
        Assert.Equal(0, sregs.Cs.Selector);
        Assert.Equal(0UL, sregs.Cs.Base);
        Assert.Equal(0xffffu, sregs.Cs.Limit);
        Assert.Equal(0UL, sregs.Cr0 & CpuSetup.Cr0Pe);
        Assert.Equal(0x2UL, vm.Vcpu.GetRegs().Rflags);

        Assert.Equal("real:seg", Text(vm.RunUntilHalt()));
    }

    [KvmFact]
    public void Protected_mode_guest_reloads_segments_from_the_boot_gdt_and_uses_the_stack()
    {
        using var vm = BootTestVm.Create();
        const ulong entry = 0x10000, next = 0x10100, message = 0x10200;
        vm.Memory.Write(message, "gdt+stack|"u8);
        var first = BootTestVm.Assemble(32, entry, a =>
        {
            BootTestVm.EmitOutBytes(a, "pm:"u8);
            a.mov(ax, BootLayout.DataSelector);
            a.mov(ds, ax);
            a.mov(es, ax);
            a.mov(ss, ax);
            a.AddInstruction(Instruction.CreateBranch(Code.Jmp_ptr1632, BootLayout.Code32Selector, (uint)next));
        });
        var second = BootTestVm.Assemble(32, next, a =>
        {
            var print = a.CreateLabel();
            a.mov(esi, (uint)message);
            a.mov(ecx, 10u);
            a.call(print);
            // Above 1 MiB: write and read back near the top of the 2 MiB RAM (flat 4 GiB segments, no A20 wrap).
            a.mov(edi, 0x1ffff0u);
            a.mov(__byte_ptr[edi], (byte)'A');
            a.mov(al, __byte_ptr[edi]);
            a.@out(dx, al);
            a.hlt();
            a.Label(ref print);
            a.mov(dx, BootTestVm.OutPort);
            a.rep.outsb();
            a.ret();
        });
        var segments = new[] { ImageLoader.LoadFlat(vm.Memory, first, entry, CpuMode.Protected), ImageLoader.LoadFlat(vm.Memory, second, next, CpuMode.Protected) };
        CpuSetup.Enter(vm.Vcpu, vm.Memory, CpuMode.Protected, segments[0].EntryPoint);

        var s = vm.Vcpu.GetSregs();
        Assert.Equal(BootLayout.Code32Selector, s.Cs.Selector);
        Assert.Equal(1, s.Cs.Db);
        Assert.Equal(0xffffffffu, s.Cs.Limit);
        Assert.NotEqual(0UL, s.Cr0 & CpuSetup.Cr0Pe);
        Assert.Equal(0UL, s.Cr0 & CpuSetup.Cr0Pg);
        Assert.Equal(BootLayout.GdtAddress, s.Gdt.Base);

        Assert.Equal("pm:gdt+stack|A", Text(vm.RunUntilHalt()));
    }

    [KvmFact]
    public void Long_mode_guest_reaches_memory_above_3_and_4_GiB_through_the_identity_map()
    {
        const ulong high3 = 0xc000_0000, high4 = 0x1_0000_0000;
        using var vm = BootTestVm.Create(extraRegions:
        [
            new MemoryRegionSpec("at-3GiB", high3, 0x200000, false),
            new MemoryRegionSpec("at-4GiB", high4, 0x200000, false),
        ]);
        const ulong entry = 0x10000;
        var code = BootTestVm.Assemble(64, entry, a =>
        {
            BootTestVm.EmitOutBytes(a, "lm:"u8);
            // Far return into the GDT's 64-bit code selector, and reload data segments from the boot GDT.
            var reloaded = a.CreateLabel();
            a.mov(ax, BootLayout.DataSelector);
            a.mov(ds, ax);
            a.mov(ss, ax);
            a.push(BootLayout.Code64Selector);
            a.lea(rax, __[reloaded]);
            a.push(rax);
            a.AddInstruction(Instruction.Create(Code.Retfq));
            a.Label(ref reloaded);
            a.mov(dx, BootTestVm.OutPort);
            foreach (var (address, value) in new[] { (high3 + 0x1234, (byte)'3'), (high4 + 0x100000, (byte)'4'), (0x1ff000UL, (byte)'L') })
            {
                a.mov(rdi, address);
                a.mov(__byte_ptr[rdi], value);
                a.mov(al, __byte_ptr[rdi]);
                a.@out(dx, al);
            }
            a.hlt();
        });
        var image = ImageLoader.LoadFlat(vm.Memory, code, entry, CpuMode.Long);
        CpuSetup.Enter(vm.Vcpu, vm.Memory, CpuMode.Long, image.EntryPoint);

        var s = vm.Vcpu.GetSregs();
        Assert.Equal(1, s.Cs.L);
        Assert.Equal(BootLayout.Pml4Address, s.Cr3);
        Assert.NotEqual(0UL, s.Efer & CpuSetup.EferLma);

        Assert.Equal("lm:34L", Text(vm.RunUntilHalt()));
        var check = new byte[1];
        vm.Memory.Read(high4 + 0x100000, check);
        Assert.Equal((byte)'4', check[0]);
    }

    [KvmFact]
    public void Elf64_executable_runs_in_long_mode()
    {
        using var vm = BootTestVm.Create();
        const ulong text = 0x100000, bss = 0x180000;
        var code = BootTestVm.Assemble(64, text, a =>
        {
            BootTestVm.EmitOutBytes(a, "elf64:"u8);
            // The bss must be zero: output its first byte + '0'.
            a.mov(rdi, bss);
            a.mov(al, __byte_ptr[rdi]);
            a.add(al, (byte)'0');
            a.@out(dx, al);
            a.hlt();
        });
        vm.Memory.Write(bss, [0x55]); // dirt the zero-fill is expected to clear
        var elf = TestImages.Elf(64, text, [new TestSegment(text, code), new TestSegment(bss, [], MemorySize: 0x1000)]);
        var image = ImageLoader.LoadElf(vm.Memory, elf);
        Assert.Equal(ImageFormat.Elf64, image.Format);
        Assert.Equal(CpuMode.Long, image.NaturalMode);
        CpuSetup.Enter(vm.Vcpu, vm.Memory, image.NaturalMode!.Value, image.EntryPoint);
        Assert.Equal("elf64:0", Text(vm.RunUntilHalt()));
    }

    [KvmTheory]
    [InlineData(true)]
    [InlineData(false)]
    public void Cpuid_reports_the_vcpu_apic_id_and_hides_masked_features(bool maskX2apic)
    {
        using var vm = BootTestVm.Create(vcpuId: 3, maskedCpuid: maskX2apic ? ["x2apic"] : []);
        var offered = (byte)((CpuidSetup.Find(vm.Kvm.GetSupportedCpuid(), 1)!.Value.Ecx >> 21) & 1);
        output.WriteLine($"KVM offers x2APIC: {offered}");
        const ulong entry = 0x10000;
        var code = BootTestVm.Assemble(64, entry, a =>
        {
            a.mov(eax, 1);
            a.xor(ecx, ecx);
            a.cpuid();
            a.mov(esi, ecx);
            a.mov(eax, ebx);
            a.shr(eax, 24);
            a.mov(dx, BootTestVm.OutPort);
            a.@out(dx, al);              // APIC id from leaf 1 EBX[31:24]
            a.mov(eax, esi);
            a.shr(eax, 21);
            a.and(al, 1);
            a.@out(dx, al);              // x2APIC bit
            a.hlt();
        });
        ImageLoader.LoadFlat(vm.Memory, code, entry, CpuMode.Long);
        CpuSetup.Enter(vm.Vcpu, vm.Memory, CpuMode.Long, entry);
        Assert.Equal(new byte[] { 3, maskX2apic ? (byte)0 : offered }, vm.RunUntilHalt());
    }

    [KvmTheory]
    [InlineData(CpuMode.Protected, 32)]
    [InlineData(CpuMode.Long, 64)]
    public void An_exception_before_the_guest_loads_an_idt_is_a_clean_shutdown(CpuMode mode, int bitness)
    {
        using var vm = BootTestVm.Create();
        const ulong entry = 0x10000;
        var code = BootTestVm.Assemble(bitness, entry, a =>
        {
            BootTestVm.EmitOutBytes(a, "x"u8);
            a.ud2();
            a.hlt();
        });
        ImageLoader.LoadFlat(vm.Memory, code, entry, mode);
        CpuSetup.Enter(vm.Vcpu, vm.Memory, mode, entry);
        var (exit, output) = vm.RunUntilStop();
        Assert.Equal("x", Text(output));
        Assert.Equal(KvmExitReason.Shutdown, exit);
    }

    [KvmFact]
    public void Private_pages_are_set_or_explained()
    {
        using var vm = BootTestVm.Create();
        output.WriteLine(vm.PrivatePages.ToString());
        // On KVMs that offer the capabilities the pages are set; elsewhere the result says why not. Either way no throw.
        if (!vm.PrivatePages.TssAddressSet || !vm.PrivatePages.IdentityMapAddressSet)
            Assert.NotEmpty(vm.PrivatePages.Notes);
        Assert.Contains("TSS", vm.PrivatePages.ToString());
    }
}

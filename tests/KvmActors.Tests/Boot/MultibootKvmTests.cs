using System.Text;
using Iced.Intel;
using KvmActors.Runtime.Boot;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace KvmActors.Tests.Boot;

/// <summary>Multiboot kernels on a real /dev/kvm: the guest checks EAX, reads the info structure via EBX and prints it.</summary>
public sealed class MultibootKvmTests
{
    /// <summary>
    /// 32-bit guest: if EAX != 0x2BADB002 print "!" and halt; else print the cmdline, "|", the first module's bytes,
    /// "|", the first module's string, "|", and the boot loader name.
    /// </summary>
    private static void EmitInfoPrinter(Assembler a)
    {
        var bad = a.CreateLabel();
        var puts = a.CreateLabel();
        var noModules = a.CreateLabel();
        a.mov(dx, BootTestVm.OutPort);
        a.cmp(eax, Multiboot.BootloaderMagic);
        a.jne(bad);
        a.mov(esi, __dword_ptr[ebx + Multiboot.InfoOffsets.Cmdline]);
        a.call(puts);
        a.mov(al, (byte)'|');
        a.@out(dx, al);
        a.mov(ecx, __dword_ptr[ebx + Multiboot.InfoOffsets.ModsCount]);
        a.test(ecx, ecx);
        a.jz(noModules);
        a.mov(edi, __dword_ptr[ebx + Multiboot.InfoOffsets.ModsAddr]);
        a.mov(esi, __dword_ptr[edi]);
        a.mov(ecx, __dword_ptr[edi + 4]);
        a.sub(ecx, esi);
        a.rep.outsb();
        a.mov(al, (byte)'|');
        a.@out(dx, al);
        a.mov(esi, __dword_ptr[edi + 8]);
        a.call(puts);
        a.Label(ref noModules);
        a.mov(al, (byte)'|');
        a.@out(dx, al);
        a.mov(esi, __dword_ptr[ebx + Multiboot.InfoOffsets.BootLoaderName]);
        a.call(puts);
        a.hlt();
        a.Label(ref bad);
        a.mov(al, (byte)'!');
        a.@out(dx, al);
        a.hlt();
        // puts: print the NUL-terminated string at ESI (uses the boot stack for call/ret).
        var done = a.CreateLabel();
        a.Label(ref puts);
        a.lodsb();
        a.test(al, al);
        a.jz(done);
        a.@out(dx, al);
        a.jmp(puts);
        a.Label(ref done);
        a.ret();
    }

    [KvmFact]
    public void Multiboot_elf_kernel_sees_magic_cmdline_module_and_loader_name()
    {
        using var vm = BootTestVm.Create();
        const ulong load = 0x100000;
        var header = TestImages.MultibootHeader(Multiboot.FlagPageAlignModules | Multiboot.FlagMemoryInfo);
        var entry = load + (ulong)header.Length;
        var code = BootTestVm.Assemble(32, entry, EmitInfoPrinter);
        var elf = TestImages.Elf(32, entry, [new TestSegment(load, TestImages.Concat(header, code), MemorySize: 0x2000)]);

        var image = Multiboot.Load(vm.Memory, elf, "kernel.elf", "console=ttyS0 quiet",
            [new MultibootModule("initrd.img ro", "MODDATA"u8.ToArray())]);
        Assert.Equal(BootLayout.MultibootInfoAddress, image.MultibootInfoAddress);
        Assert.Equal(0UL, image.Modules![0].Start % BootLayout.PageSize);
        Assert.True(image.Modules[0].Start >= load + 0x2000);
        CpuSetup.EnterMultiboot(vm.Vcpu, vm.Memory, image);

        var regs = vm.Vcpu.GetRegs();
        Assert.Equal(Multiboot.BootloaderMagic, regs.Rax);
        Assert.Equal(BootLayout.MultibootInfoAddress, regs.Rbx);
        Assert.Equal(entry, regs.Rip);

        Assert.Equal("kernel.elf console=ttyS0 quiet|MODDATA|initrd.img ro|KvmActors", Encoding.ASCII.GetString(vm.RunUntilHalt()));
    }

    [KvmFact]
    public void Multiboot_kernel_with_address_fields_is_loaded_by_them()
    {
        using var vm = BootTestVm.Create();
        // File: 0x40 bytes of padding, then the header, then code. Loaded so the header sits at 0x200040.
        const uint loadAddr = 0x200000 - 0x100000; // 1 MiB (RAM is 2 MiB)
        const int headerOffset = 0x40;
        const uint headerAddr = loadAddr + headerOffset;
        const uint entry = headerAddr + 32;
        var code = BootTestVm.Assemble(32, entry, EmitInfoPrinter);
        var fileLength = headerOffset + 32 + code.Length;
        var header = TestImages.MultibootHeader(Multiboot.FlagAddressFields,
            addresses: (headerAddr, loadAddr, loadAddr + (uint)fileLength, loadAddr + 0x3000, entry));
        var file = TestImages.Concat(new byte[headerOffset], header, code);

        var image = Multiboot.Load(vm.Memory, file, "aout-kernel", "");
        Assert.Equal(new GuestRange(loadAddr, loadAddr + 0x3000), image.Segments[0] with { Name = "" });
        CpuSetup.EnterMultiboot(vm.Vcpu, vm.Memory, image);
        Assert.Equal("aout-kernel||KvmActors", Encoding.ASCII.GetString(vm.RunUntilHalt()));
    }
}

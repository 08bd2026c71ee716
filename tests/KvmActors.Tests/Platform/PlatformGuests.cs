using System.Text;
using Iced.Intel;
using KvmActors.Runtime.Boot;
using KvmActors.Tests.Boot;
using KvmActors.Tests.Support;
using static Iced.Intel.AssemblerRegisters;

namespace KvmActors.Tests.Platform;

/// <summary>
/// The guests of the platform tests and of the example configs in hocon/guests/, assembled with Iced.
/// They follow QEMU's conventions: COM1 at 0x3f8 (polling LSR.THRE at 0x3fd before every byte), isa-debug-exit
/// at 0xf4 (the VM ends with status (v &lt;&lt; 1) | 1), fw_cfg at 0x510/0x511, the local APIC at 0xfee00000.
/// </summary>
public static class PlatformGuests
{
    public const ushort Com1 = 0x3f8, Com1Lsr = 0x3fd, DebugExit = 0xf4, FwCfgSelector = 0x510, FwCfgData = 0x511;
    public const uint LocalApic = 0xfee00000;

    /// <summary>debug-exit value v: the VM's exit status is (v &lt;&lt; 1) | 1.</summary>
    public static int ExitStatus(byte value) => (value << 1) | 1;

    /// <summary>Where protected- and long-mode test images go (1 MiB, as a Multiboot kernel would).</summary>
    public const ulong HighLoad = 0x100000;

    // ---- building blocks ------------------------------------------------------------------------------------

    /// <summary>
    /// Code followed by NUL-terminated strings and data: <paramref name="code"/> gets each data item's address by
    /// name. Assembled twice (the first pass measures the code; the addresses only appear as mov immediates, whose
    /// size does not depend on their value).
    /// </summary>
    public static byte[] CodeAndData(int bits, ulong origin, Action<Assembler, Func<string, uint>> code, params (string Name, byte[] Bytes)[] data)
    {
        var length = Guests.Assemble(bits, origin, a => code(a, _ => (uint)origin)).Length;
        var addresses = new Dictionary<string, uint>();
        var at = origin + (ulong)length;
        foreach (var (name, bytes) in data)
        {
            addresses[name] = checked((uint)at);
            at += (ulong)bytes.Length;
        }
        var final = Guests.Assemble(bits, origin, a => code(a, n => addresses[n]));
        if (final.Length != length) throw new InvalidOperationException($"the code changed size between passes ({length} -> {final.Length})");
        return [.. final, .. data.SelectMany(d => d.Bytes)];
    }

    public static byte[] Z(string s) => Encoding.ASCII.GetBytes(s + "\0");

    /// <summary>Point (E/R)SI at <paramref name="address"/> (fixed-size immediate in every bitness).</summary>
    public static void LoadSi(Assembler a, int bits, uint address)
    {
        if (bits == 16) a.mov(si, (ushort)address);
        else a.mov(esi, address); // zero-extends into RSI in 64-bit mode
    }

    /// <summary>Inline loop: print the NUL-terminated string at DS:(E/R)SI. Clobbers AX, DX, SI. Needs no stack.</summary>
    public static void EmitPuts(Assembler a)
    {
        var loop = a.CreateLabel();
        var done = a.CreateLabel();
        a.Label(ref loop);
        a.lodsb();
        a.test(al, al);
        a.jz(done);
        Guests.EmitPutcAl(a);
        a.jmp(loop);
        a.Label(ref done);
    }

    public static void EmitPrint(Assembler a, int bits, uint stringAddress)
    {
        LoadSi(a, bits, stringAddress);
        EmitPuts(a);
    }

    /// <summary>out 0xf4, value; then spin (a HLT here would race the debug-exit with the halt controller).</summary>
    public static void EmitExit(Assembler a, byte value)
    {
        var spin = a.CreateLabel();
        a.mov(al, value);
        a.@out((byte)DebugExit, al);
        a.Label(ref spin);
        a.pause();
        a.jmp(spin);
    }

    // ---- one guest per CPU mode -----------------------------------------------------------------------------

    /// <summary>Prints <paramref name="text"/> on COM1 and ends the VM through debug-exit with <paramref name="exitValue"/>.</summary>
    public static byte[] Hello(CpuMode mode, ulong origin, string text, byte exitValue)
    {
        var bits = mode switch { CpuMode.Real => 16, CpuMode.Protected => 32, _ => 64 };
        return CodeAndData(bits, origin, (a, addr) =>
        {
            EmitPrint(a, bits, addr("text"));
            EmitExit(a, exitValue);
        }, ("text", Z(text)));
    }

    public const string RealText = "hello from real mode\n";
    public const string ProtectedText = "hello from protected mode\n";
    public const string LongText = "hello from long mode\n";
    public const byte RealExit = 0x10, ProtectedExit = 0x20, LongExit = 0x30;

    /// <summary>The guests of hocon/guests/protected.conf and long.conf (at 1 MiB).</summary>
    public static byte[] ProtectedHello() => Hello(CpuMode.Protected, HighLoad, ProtectedText, ProtectedExit);
    public static byte[] LongHello() => Hello(CpuMode.Long, HighLoad, LongText, LongExit);
    public static byte[] RealHello() => Hello(CpuMode.Real, 0x1000, RealText, RealExit);

    // ---- ELF and Multiboot ----------------------------------------------------------------------------------

    public const string Elf64Text = "hello from an ELF64 image in long mode\n";
    public const byte Elf64Exit = 0x40;

    /// <summary>
    /// An ELF64 executable: one PT_LOAD at 1 MiB with 64-bit code (entry 0x20 bytes in, after a few bytes of
    /// padding, so the entry is really taken from e_entry) and a zero-filled tail (p_memsz &gt; p_filesz).
    /// </summary>
    public static byte[] Elf64Hello()
    {
        const ulong entry = HighLoad + 0x20;
        var code = Hello(CpuMode.Long, entry, Elf64Text, Elf64Exit);
        var data = new byte[0x20 + code.Length];
        data.AsSpan(0, 0x20).Fill(0xcc); // int3: reached only if the entry point were wrong
        code.CopyTo(data, 0x20);
        return TestImages.Elf(64, entry, [new TestSegment(HighLoad, data, MemorySize: 0x3000)]);
    }

    public const byte MultibootExit = 0x21, MultibootBadMagicExit = 0x7f;

    /// <summary>
    /// 32-bit Multiboot kernel body: checks EAX = 0x2BADB002 (else exits with <see cref="MultibootBadMagicExit"/>),
    /// prints the command line, a newline, then for each module its string, ": " and its bytes, and a newline;
    /// then exits with <see cref="MultibootExit"/>. Uses EBX (info), EDI (module entry), EBP (modules left).
    /// </summary>
    private static void EmitMultibootReport(Assembler a)
    {
        var bad = a.CreateLabel();
        var modules = a.CreateLabel();
        var moduleBytes = a.CreateLabel();
        var moduleDone = a.CreateLabel();
        var done = a.CreateLabel();
        a.cmp(eax, Multiboot.BootloaderMagic);
        a.jne(bad);
        a.mov(esi, __dword_ptr[ebx + Multiboot.InfoOffsets.Cmdline]);
        EmitPuts(a);
        a.mov(al, (byte)'\n');
        Guests.EmitPutcAl(a);
        a.mov(ebp, __dword_ptr[ebx + Multiboot.InfoOffsets.ModsCount]);
        a.mov(edi, __dword_ptr[ebx + Multiboot.InfoOffsets.ModsAddr]);
        a.Label(ref modules);
        a.test(ebp, ebp);
        a.jz(done);
        a.mov(esi, __dword_ptr[edi + 8]);
        EmitPuts(a);
        a.mov(al, (byte)':');
        Guests.EmitPutcAl(a);
        a.mov(al, (byte)' ');
        Guests.EmitPutcAl(a);
        a.mov(esi, __dword_ptr[edi]);
        a.Label(ref moduleBytes);
        a.cmp(esi, __dword_ptr[edi + 4]);
        a.jae(moduleDone);
        a.lodsb();
        Guests.EmitPutcAl(a);
        a.jmp(moduleBytes);
        a.Label(ref moduleDone);
        a.mov(al, (byte)'\n');
        Guests.EmitPutcAl(a);
        a.add(edi, 16);
        a.dec(ebp);
        a.jmp(modules);
        a.Label(ref done);
        EmitExit(a, MultibootExit);
        a.Label(ref bad);
        EmitExit(a, MultibootBadMagicExit);
    }

    /// <summary>
    /// The kernel of hocon/guests/multiboot.conf: a flat binary with a Multiboot header using the address fields
    /// (flags: page-align modules, memory info, address fields), loaded at 1 MiB, entry right after the header.
    /// </summary>
    public static byte[] MultibootFlatKernel()
    {
        const uint flags = Multiboot.FlagPageAlignModules | Multiboot.FlagMemoryInfo | Multiboot.FlagAddressFields;
        const uint load = (uint)HighLoad;
        const uint entry = load + 32;
        var header = TestImages.MultibootHeader(flags, addresses: (load, load, 0, 0, entry));
        var code = Guests.Assemble(32, entry, EmitMultibootReport);
        return [.. header, .. code];
    }

    /// <summary>
    /// A Multiboot kernel in an ELF64 file (as kernels built for x86-64 often are): the header without address
    /// fields, so the loader takes the segments from the ELF program headers; entered in 32-bit protected mode.
    /// </summary>
    public static byte[] MultibootElf64Kernel()
    {
        var header = TestImages.MultibootHeader(Multiboot.FlagPageAlignModules | Multiboot.FlagMemoryInfo);
        var entry = HighLoad + (ulong)header.Length;
        var code = Guests.Assemble(32, entry, EmitMultibootReport);
        return TestImages.Elf(64, entry, [new TestSegment(HighLoad, [.. header, .. code], MemorySize: 0x2000)]);
    }

    // ---- fw_cfg ---------------------------------------------------------------------------------------------

    public const byte FwCfgExit = 0x22;
    public const ulong FwCfgProbeLoad = 0x8000;
    public const uint RomProbeAddress = 0xffff0000;

    /// <summary>
    /// Protected mode, at 0x8000: reads fw_cfg's signature (key 0), RAM size (key 3, u64) and CPU count (key 5, u16)
    /// and prints "sig=QEMU ram=XXXXXXXXXXXXXXXX cpus=XXXX rom=XX\n" (hex); the ROM byte is read at 0xffff0000 after a
    /// write of 0x00 there, which a read-only region must drop. Then exits with <see cref="FwCfgExit"/>.
    /// </summary>
    public static byte[] FwCfgProbe() => CodeAndData(32, FwCfgProbeLoad, (a, addr) =>
    {
        var hex = a.CreateLabel();
        var digit = a.CreateLabel();
        var select = a.CreateLabel();
        var sig = a.CreateLabel();

        // Signature: 4 bytes of key 0.
        EmitPrint(a, 32, addr("sig"));
        a.mov(ax, FwCfgItemsKeys.Signature);
        a.call(select);
        a.mov(ecx, 4);
        a.Label(ref sig);
        a.mov(dx, FwCfgData);
        a.@in(al, dx);
        a.push(ecx);
        Guests.EmitPutcAl(a);
        a.pop(ecx);
        a.loop(sig);

        // RAM size: u64 little-endian; print the high dword first.
        EmitPrint(a, 32, addr("ram"));
        a.mov(ax, FwCfgItemsKeys.RamSize);
        a.call(select);
        a.mov(dx, FwCfgData);
        a.@in(eax, dx); // a 4-byte read returns 4 consecutive bytes, first in the low byte
        a.mov(ebx, eax);
        a.@in(eax, dx);
        a.mov(ecx, 8);
        a.call(hex);
        a.mov(eax, ebx);
        a.mov(ecx, 8);
        a.call(hex);

        // CPU count: u16, read a byte at a time as the fw_cfg spec's 8-bit data register.
        EmitPrint(a, 32, addr("cpus"));
        a.mov(ax, FwCfgItemsKeys.NbCpus);
        a.call(select);
        a.mov(dx, FwCfgData);
        a.@in(al, dx);
        a.mov(bl, al);
        a.@in(al, dx);
        a.mov(bh, al);
        a.movzx(eax, bx);
        a.shl(eax, 16);
        a.mov(ecx, 4);
        a.call(hex);

        // ROM: a write must not stick.
        EmitPrint(a, 32, addr("rom"));
        a.mov(__byte_ptr[RomProbeAddress], 0);
        a.movzx(eax, __byte_ptr[RomProbeAddress]);
        a.shl(eax, 24);
        a.mov(ecx, 2);
        a.call(hex);
        a.mov(al, (byte)'\n');
        Guests.EmitPutcAl(a);
        EmitExit(a, FwCfgExit);

        // select: AX = key -> selector port.
        a.Label(ref select);
        a.mov(dx, FwCfgSelector);
        a.@out(dx, ax);
        a.ret();

        // hex: print the top ECX nibbles of EAX. Clobbers EAX, ECX, EDX.
        a.Label(ref hex);
        a.rol(eax, 4);
        a.push(eax);
        a.and(al, 0xf);
        a.add(al, (byte)'0');
        a.cmp(al, (byte)'9');
        a.jbe(digit);
        a.add(al, (byte)('a' - '9' - 1));
        a.Label(ref digit);
        Guests.EmitPutcAl(a);
        a.pop(eax);
        a.loop(hex);
        a.ret();
    }, ("sig", Z("sig=")), ("ram", Z(" ram=")), ("cpus", Z(" cpus=")), ("rom", Z(" rom=")));

    /// <summary>fw_cfg selector keys (QEMU's fw_cfg spec).</summary>
    public static class FwCfgItemsKeys
    {
        public const ushort Signature = 0x0000, RamSize = 0x0003, NbCpus = 0x0005;
    }

    // ---- a device interrupt through the in-kernel PIC --------------------------------------------------------

    public const byte IrqExit = 0x24;
    public const string IrqText = "irq 4, iir 02\n";
    private const ulong IrqHandler = 0x1100;

    /// <summary>
    /// Real mode, at 0x1000: initialises the master PIC (vector base 0x08, so IRQ 4 is vector 0x0c; only IRQ 4
    /// unmasked), points IVT entry 0x0c at the handler at 0x1100, sets COM1's MCR.OUT2 (which gates the UART's IRQ
    /// line on a PC) and enables its THR-empty interrupt, which raises IRQ 4 at once, then waits in STI/HLT. The
    /// handler reads IIR (which identifies the THR-empty interrupt and clears it), disables the UART interrupt, prints "irq 4, iir XX", sends EOI and ends the VM
    /// through debug-exit. Without an irqchip nothing ever interrupts the HLT.
    /// </summary>
    public static byte[] UartInterrupt()
    {
        var main = Guests.Assemble(16, 0x1000, a =>
        {
            var wait = a.CreateLabel();
            a.cli();
            foreach (var (port, value) in new (byte, byte)[] { (0x20, 0x11), (0x21, 0x08), (0x21, 0x04), (0x21, 0x01), (0x21, 0xef) })
            {
                a.mov(al, value);
                a.@out(port, al);
            }
            a.mov(__word_ptr[0x0c * 4], (ushort)IrqHandler);
            a.mov(__word_ptr[0x0c * 4 + 2], 0);
            a.mov(dx, (ushort)(Com1 + 4)); // MCR
            a.mov(al, 0x08);                // OUT2
            a.@out(dx, al);
            a.mov(dx, (ushort)(Com1 + 1)); // IER
            a.mov(al, 0x02);                // ETBEI
            a.@out(dx, al);
            a.sti();
            a.Label(ref wait);
            a.hlt();
            a.jmp(wait);
        });
        var handler = CodeAndData(16, IrqHandler, (a, addr) =>
        {
            a.mov(dx, (ushort)(Com1 + 2));
            a.@in(al, dx);                  // IIR: THR empty (0x02); reading it clears that interrupt
            a.and(al, 0x0f);
            a.mov(bl, al);
            a.mov(dx, (ushort)(Com1 + 1));
            a.xor(al, al);
            a.@out(dx, al);                 // IER = 0: printing below must not raise it again
            EmitPrint(a, 16, addr("irq"));
            a.mov(al, bl);
            a.add(al, (byte)'0');
            Guests.EmitPutcAl(a);
            a.mov(al, (byte)'\n');
            Guests.EmitPutcAl(a);
            a.mov(al, 0x20);
            a.@out(0x20, al);               // EOI
            EmitExit(a, IrqExit);
        }, ("irq", Z("irq 4, iir 0")));
        if (main.Length > (int)(IrqHandler - 0x1000)) throw new InvalidOperationException("main code overlaps the handler");
        var image = new byte[IrqHandler - 0x1000 + (ulong)handler.Length];
        main.CopyTo(image, 0);
        handler.CopyTo(image, (int)(IrqHandler - 0x1000));
        return image;
    }

    // ---- SMP with an in-kernel irqchip ----------------------------------------------------------------------

    /// <summary>The SMP image's load address; the APs' real-mode code is its first bytes (SIPI vector 0x08).</summary>
    public const ulong SmpLoad = 0x8000;
    public const byte SipiVector = (byte)(SmpLoad >> 12);
    /// <summary>Shared variables: the print lock, the count of APs that reported, and per-printer digit buffers.</summary>
    public const ushort SmpLock = 0x9f00, SmpReported = 0x9f04, SmpApDigits = 0x9f10, SmpBspDigits = 0x9f20;
    public const byte SmpExit = 0x23;

    /// <summary>
    /// Real-mode code at the SIPI page (CS = 0x0800, IP = 0 after SIPI; DS = 0): takes the spinlock (xchg), reads its
    /// APIC id from CPUID leaf 1 EBX[31:24], prints "AP N up\n", counts itself in, releases the lock and parks in
    /// CLI/HLT (which waits in the kernel: the irqchip is there).
    /// </summary>
    private static byte[] SmpApCode() => CodeAndData(16, SmpLoad, (a, addr) =>
    {
        var spin = a.CreateLabel();
        var park = a.CreateLabel();
        a.cli();
        a.xor(ax, ax);
        a.mov(ds, ax);
        a.mov(es, ax);
        a.Label(ref spin);
        a.mov(al, 1);
        a.xchg(__byte_ptr[SmpLock], al);
        a.test(al, al);
        a.jnz(spin);
        a.mov(eax, 1);
        a.cpuid();
        a.shr(ebx, 24);
        EmitPrint(a, 16, addr("ap"));
        a.mov(ax, bx);
        EmitDecimal(a, 16, SmpApDigits);
        EmitPrint(a, 16, addr("up"));
        a.@lock.inc(__dword_ptr[SmpReported]);
        a.mov(__byte_ptr[SmpLock], 0);
        a.Label(ref park);
        a.cli();
        a.hlt();
        a.jmp(park);
    }, ("ap", Z("AP ")), ("up", Z(" up\n")));

    /// <summary>
    /// Print AX (0..65535) in decimal using a 6-byte buffer at <paramref name="buffer"/>. Clobbers AX, CX, DX, SI, DI.
    /// </summary>
    private static void EmitDecimal(Assembler a, int bits, ushort buffer)
    {
        var loop = a.CreateLabel();
        if (bits == 16)
        {
            a.mov(di, (ushort)(buffer + 5));
            a.mov(__byte_ptr[di], 0);
            a.mov(cx, 10);
            a.Label(ref loop);
            a.xor(dx, dx);
            a.div(cx);
            a.add(dl, (byte)'0');
            a.dec(di);
            a.mov(__byte_ptr[di], dl);
            a.test(ax, ax);
            a.jnz(loop);
            a.mov(si, di);
        }
        else
        {
            a.movzx(eax, ax);
            a.mov(edi, (uint)buffer + 5);
            a.mov(__byte_ptr[edi], 0);
            a.mov(ecx, 10);
            a.Label(ref loop);
            a.xor(edx, edx);
            a.div(ecx);
            a.add(dl, (byte)'0');
            a.dec(edi);
            a.mov(__byte_ptr[edi], dl);
            a.test(eax, eax);
            a.jnz(loop);
            a.mov(esi, edi);
        }
        EmitPuts(a);
    }

    /// <summary>
    /// The image of hocon/guests/smp-irqchip.conf, loaded at 0x8000: the APs' real-mode code (the SIPI vector page),
    /// then at <see cref="SmpBspEntry"/> the boot vCPU's 32-bit protected-mode code. The boot vCPU reads the CPU count
    /// from fw_cfg, prints "BSP: N CPUs", software-enables its local APIC (SVR bit 8), sends each AP (APIC id 1..N-1)
    /// INIT then two SIPIs with vector 0x08 through the xAPIC ICR (as the SDM's MP initialisation does), waits until
    /// every AP has counted itself in, prints "all N-1 APs reported" and ends the VM through debug-exit.
    /// </summary>
    public static (byte[] Image, ulong BspEntry) SmpIrqchip()
    {
        var ap = SmpApCode();
        var bspEntry = SmpLoad + (ulong)Align(ap.Length, 16);
        var bsp = CodeAndData(32, bspEntry, (a, addr) =>
        {
            var started = a.CreateLabel();
            var wait = a.CreateLabel();
            var sendIpi = a.CreateLabel();

            a.mov(__dword_ptr[SmpReported], 0);
            a.mov(__byte_ptr[SmpLock], 0);
            EmitCpuCountToEbx(a);
            EmitPrint(a, 32, addr("bsp"));
            a.mov(eax, ebx);
            EmitDecimal(a, 32, SmpBspDigits);
            EmitPrint(a, 32, addr("cpus"));

            EmitStartAps(a, SipiVector, sendIpi, started);

            // Wait for the APs.
            a.Label(ref started);
            a.lea(ecx, __[ebx - 1]);
            a.Label(ref wait);
            a.pause();
            a.cmp(__dword_ptr[SmpReported], ecx);
            a.jne(wait);
            EmitPrint(a, 32, addr("all"));
            a.lea(eax, __[ebx - 1]);
            EmitDecimal(a, 32, SmpBspDigits);
            EmitPrint(a, 32, addr("reported"));
            EmitExit(a, SmpExit);

            EmitSendIpi(a, ref sendIpi);
        }, ("bsp", Z("BSP: ")), ("cpus", Z(" CPUs\n")), ("all", Z("all ")), ("reported", Z(" APs reported\n")));

        var image = new byte[bspEntry - SmpLoad + (ulong)bsp.Length];
        ap.CopyTo(image, 0);
        bsp.CopyTo(image, (int)(bspEntry - SmpLoad));
        return (image, bspEntry);
    }

    /// <summary>The CPU count from fw_cfg (key 5, u16, read a byte at a time) into EBX. Clobbers AX, DX.</summary>
    public static void EmitCpuCountToEbx(Assembler a)
    {
        a.mov(dx, FwCfgSelector);
        a.mov(ax, FwCfgItemsKeys.NbCpus);
        a.@out(dx, ax);
        a.mov(dx, FwCfgData);
        a.@in(al, dx);
        a.mov(bl, al);
        a.@in(al, dx);
        a.mov(bh, al);
        a.movzx(ebx, bx);
    }

    /// <summary>
    /// Software-enables the local APIC (SVR bit 8), then sends each AP (APIC id 1..EBX-1, physical destination) INIT
    /// and two start-up IPIs with <paramref name="sipiVector"/> through <paramref name="sendIpi"/> (see
    /// <see cref="EmitSendIpi"/>; needs a stack), as the SDM's MP initialisation does; then jumps to
    /// <paramref name="started"/>, which the caller places. Clobbers EAX, EDX, EBP.
    /// </summary>
    public static void EmitStartAps(Assembler a, byte sipiVector, Label sendIpi, Label started)
    {
        const uint svr = LocalApic + 0xf0;
        var next = a.CreateLabel();
        a.mov(eax, __dword_ptr[svr]);
        a.or(eax, 0x100);
        a.mov(__dword_ptr[svr], eax);
        a.mov(ebp, 1);
        a.Label(ref next);
        a.cmp(ebp, ebx);
        a.jae(started);
        a.mov(eax, 0x00004500u); // INIT, level assert
        a.call(sendIpi);
        a.mov(eax, 0x00004600u | sipiVector); // start-up
        a.call(sendIpi);
        a.mov(eax, 0x00004600u | sipiVector);
        a.call(sendIpi);
        a.inc(ebp);
        a.jmp(next);
    }

    /// <summary>The subroutine at <paramref name="sendIpi"/>: EAX = ICR low, EBP = destination APIC id; returns once the delivery status is idle.</summary>
    public static void EmitSendIpi(Assembler a, ref Label sendIpi)
    {
        const uint icrLow = LocalApic + 0x300, icrHigh = LocalApic + 0x310;
        var waitIcr = a.CreateLabel();
        a.Label(ref sendIpi);
        a.mov(edx, ebp);
        a.shl(edx, 24);
        a.mov(__dword_ptr[icrHigh], edx);
        a.mov(__dword_ptr[icrLow], eax);
        a.Label(ref waitIcr);
        a.test(__dword_ptr[icrLow], 0x1000);
        a.jnz(waitIcr);
        a.ret();
    }

    public static ulong SmpBspEntry => SmpIrqchip().BspEntry;

    private static int Align(int v, int a) => (v + a - 1) / a * a;
}

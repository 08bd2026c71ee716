using System.Text;
using Iced.Intel;
using KvmActors.Tests.Support;
using static Iced.Intel.AssemblerRegisters;

namespace KvmActors.Tests.DevicesOnKvm;

/// <summary>
/// Real-mode guests (loaded at 0x1000, DS = 0, a stack at 0x8000) that drive devices the way a small
/// driver would, assembled with Iced. Output goes to COM1 (0x3f8), polling LSR.THRE before each byte.
/// </summary>
public static class DeviceGuests
{
    public const ushort Com1 = 0x3f8;
    public const ushort Rbr = Com1, Thr = Com1, Dll = Com1, Ier = Com1 + 1, Dlm = Com1 + 1;
    public const ushort Iir = Com1 + 2, Fcr = Com1 + 2, Lcr = Com1 + 3, Mcr = Com1 + 4, Lsr = Com1 + 5;
    public const byte DebugExitPort = 0xf4;

    /// <summary>Where <see cref="UartDriver"/> keeps what it saw: DLL read back, then five IIR values.</summary>
    private const ushort Seen = 0x3000;

    /// <summary>
    /// hocon/guests/uart-echo.conf: programs COM1 for 115200 8N1 (DLAB, divisor 1, LCR 0x03), then
    /// echoes every byte it receives (polling LSR.DR, then LSR.THRE) until <paramref name="stop"/>, which
    /// it does not echo; then writes the number of bytes echoed (mod 128) to debug-exit, so the
    /// process exit status is (n &lt;&lt; 1) | 1; then spins until the VM stops. No stack, no FIFOs (so no
    /// byte is ever cleared away).
    /// </summary>
    public static byte[] UartEcho(byte stop = (byte)'q') => Guests.Assemble(16, 0x1000, a =>
    {
        var next = a.CreateLabel();
        var wait = a.CreateLabel();
        var done = a.CreateLabel();
        Out(a, Lcr, 0x80);       // DLAB: the next two ports are the divisor latch
        Out(a, Dll, 0x01);       // divisor 1: 115200 baud
        Out(a, Dlm, 0x00);
        Out(a, Lcr, 0x03);       // 8N1, DLAB off
        a.xor(di, di);
        a.Label(ref next);
        a.mov(dx, Lsr);
        a.@in(al, dx);
        a.test(al, 0x01);        // LSR.DR
        a.jz(next);
        a.mov(dx, Rbr);
        a.@in(al, dx);
        a.cmp(al, stop);
        a.je(done);
        a.mov(ah, al);
        a.mov(dx, Lsr);
        a.Label(ref wait);
        a.@in(al, dx);
        a.test(al, 0x20);        // LSR.THRE
        a.jz(wait);
        a.mov(dx, Thr);
        a.mov(al, ah);
        a.@out(dx, al);
        a.inc(di);
        a.jmp(next);
        a.Label(ref done);
        a.mov(ax, di);
        a.and(al, 0x7f);
        a.@out(DebugExitPort, al);
        SpinUntilStopped(a);
    });

    /// <summary>
    /// hocon/guests/debug-exit.conf: prints "42\n" on COM1 and writes 42 (0x2a) to debug-exit: exit
    /// status (0x2a &lt;&lt; 1) | 1 = 85.
    /// </summary>
    public static byte[] DebugExit(byte value = 0x2a) => Guests.Assemble(16, 0x1000, a =>
    {
        a.mov(dx, Thr);
        foreach (var c in $"{value}\n")
        {
            a.mov(al, (byte)c);
            a.@out(dx, al);
        }
        a.mov(al, value);
        a.@out(DebugExitPort, al);
        SpinUntilStopped(a);
    });

    /// <summary>
    /// A UART driver that checks the interrupt identification order, then echoes host input until
    /// <paramref name="stop"/>:
    /// <list type="number">
    /// <item>Programs 9600 8N1 (DLAB, divisor 12, which it reads back), FCR 0x07 (FIFOs on and cleared,
    /// trigger 1), MCR 0x03 (DTR, RTS; OUT2 off, so no IRQ reaches the PIC), IER 0x03 (RX data, THRE).</item>
    /// <item>Reads IIR twice: THRE (0xc2) since THR is empty, which the read clears; then none (0xc1).</item>
    /// <item>Prints "ready\r\n" (which leaves THRE pending again) and polls LSR.DR for the first byte.</item>
    /// <item>With RX data and THRE both pending, reads IIR (RX data first: 0xc4), RBR, IIR (THRE: 0xc2,
    /// when that byte was the only one), IIR (none: 0xc1).</item>
    /// <item>Echoes the first byte and every byte after it, until <paramref name="stop"/>.</item>
    /// <item>Prints "\r\nDLL 0c IIR c2 c1 c4 c2 c1\r\n" (what it saw) and writes the number of bytes
    /// echoed to debug-exit.</item>
    /// </list>
    /// </summary>
    public static byte[] UartDriver(byte stop = 0x04) => Guests.Assemble(16, 0x1000, a =>
    {
        var routines = new Routines(a);
        var firstByte = a.CreateLabel();
        var echo = a.CreateLabel();
        var nextByte = a.CreateLabel();
        var done = a.CreateLabel();
        var report = a.CreateLabel();

        Out(a, Lcr, 0x80);
        Out(a, Dll, 12);
        Out(a, Dlm, 0);
        a.mov(dx, Dll);
        a.@in(al, dx);
        a.mov(__byte_ptr[Seen], al);
        Out(a, Lcr, 0x03);
        Out(a, Fcr, 0x07);
        Out(a, Mcr, 0x03);
        Out(a, Ier, 0x03);
        a.mov(dx, Iir);
        a.@in(al, dx);
        a.mov(__byte_ptr[Seen + 1], al);
        a.@in(al, dx);
        a.mov(__byte_ptr[Seen + 2], al);
        routines.Print("ready\r\n");

        a.Label(ref firstByte);
        a.mov(dx, Lsr);
        a.@in(al, dx);
        a.test(al, 0x01);
        a.jz(firstByte);
        a.mov(dx, Iir);
        a.@in(al, dx);
        a.mov(__byte_ptr[Seen + 3], al);
        a.mov(dx, Rbr);
        a.@in(al, dx);
        a.mov(bl, al);
        a.mov(dx, Iir);
        a.@in(al, dx);
        a.mov(__byte_ptr[Seen + 4], al);
        a.@in(al, dx);
        a.mov(__byte_ptr[Seen + 5], al);
        a.xor(di, di);
        a.mov(al, bl);

        a.Label(ref echo);
        a.cmp(al, stop);
        a.je(done);
        a.call(routines.PutC);
        a.inc(di);
        a.Label(ref nextByte);
        a.mov(dx, Lsr);
        a.@in(al, dx);
        a.test(al, 0x01);
        a.jz(nextByte);
        a.mov(dx, Rbr);
        a.@in(al, dx);
        a.jmp(echo);

        a.Label(ref done);
        routines.Print("\r\nDLL ");
        a.mov(al, __byte_ptr[Seen]);
        a.call(routines.PutHex8);
        routines.Print(" IIR");
        a.mov(bx, Seen + 1);
        a.Label(ref report);
        a.mov(al, (byte)' ');
        a.call(routines.PutC);
        a.mov(al, __byte_ptr[bx]);
        a.call(routines.PutHex8);
        a.inc(bx);
        a.cmp(bx, Seen + 6);
        a.jb(report);
        routines.Print("\r\n");
        a.mov(ax, di);
        a.and(al, 0x7f);
        a.@out(DebugExitPort, al);
        SpinUntilStopped(a);

        routines.Emit();
    });

    /// <summary>What <see cref="UartDriver"/> prints at the end when the order is as the 16550A datasheet gives it.</summary>
    public const string UartDriverReport = "\r\nDLL 0c IIR c2 c1 c4 c2 c1\r\n";

    /// <summary>
    /// Drives a sample-counter at ports <paramref name="port"/>..+7 and prints, one hex dword a line:
    /// COUNT after adding 5 (a 2-byte OUT) and 0x100 (a 4-byte OUT); COUNT again (grown by step);
    /// WRITES (2); a 1-byte read of COUNT; then, after a write to WRITES (reset), COUNT. Halts.
    /// </summary>
    public static byte[] CounterOnPorts(ushort port) => Guests.Assemble(16, 0x1000, a =>
    {
        var r = new Routines(a);
        a.mov(dx, port);
        a.mov(ax, 5);
        a.@out(dx, ax);
        a.mov(eax, 0x100);
        a.@out(dx, eax);
        a.@in(eax, dx);
        a.call(r.PutHex32Line);
        a.mov(dx, port);
        a.@in(eax, dx);
        a.call(r.PutHex32Line);
        a.mov(dx, (ushort)(port + 4));
        a.@in(eax, dx);
        a.call(r.PutHex32Line);
        a.mov(dx, port);
        a.xor(eax, eax);
        a.@in(al, dx);
        a.call(r.PutHex32Line);
        a.mov(dx, (ushort)(port + 4));
        a.@out(dx, al);
        a.mov(dx, port);
        a.@in(eax, dx);
        a.call(r.PutHex32Line);
        a.hlt();
        r.Emit();
    });

    /// <summary>
    /// The same through MMIO: a sample-counter at guest-physical <paramref name="counter"/> (reached with
    /// DS = counter >> 4), then reads of <paramref name="unmapped"/> where nothing is mapped. Prints,
    /// one hex dword a line: COUNT after adding 5 (a 2-byte store) and 0x100 (a 4-byte store); COUNT
    /// again; WRITES; then a 4-byte and a 1-byte read of the unmapped address. Halts.
    /// </summary>
    public static byte[] CounterOnMmio(uint counter, uint unmapped) => Guests.Assemble(16, 0x1000, a =>
    {
        var r = new Routines(a);
        SetDs(a, counter);
        a.mov(__word_ptr[0], 5);
        a.mov(__dword_ptr[0], 0x100);
        a.mov(ecx, __dword_ptr[0]);
        a.mov(esi, __dword_ptr[0]);
        a.mov(edi, __dword_ptr[4]);
        SetDs(a, unmapped);
        a.mov(ebp, __dword_ptr[0]);
        a.xor(ebx, ebx);
        a.mov(bl, __byte_ptr[0]);
        SetDs(a, 0);
        foreach (var reg in new[] { ecx, esi, edi, ebp, ebx })
        {
            a.mov(eax, reg);
            a.call(r.PutHex32Line);
        }
        a.hlt();
        r.Emit();
    });

    /// <summary>
    /// A small PCI driver through configuration mechanism #1: prints the vendor/device dword of bus 0 devices 0-3,
    /// then for the device in slot 1 (pci-testdev): BAR 0 as found, its size mask (all ones written), BAR 0 after
    /// moving it to <paramref name="movedMem"/>; selects test 0 and makes three hits at the moved BAR, prints the count
    /// and the first name dword read there, and what the old place reads now; then moves BAR 1 (I/O) to
    /// <paramref name="movedIo"/>, selects test 1 there, makes two hits and prints the count. Real mode: both
    /// memory addresses must be below 1 MiB.
    /// </summary>
    public static byte[] PciScanAndMove(uint movedMem, ushort movedIo) => Guests.Assemble(16, 0x1000, a =>
    {
        var r = new Routines(a);
        void Config(int device, int register)
        {
            a.mov(dx, (ushort)0xcf8);
            a.mov(eax, 0x8000_0000u | (uint)(device << 11) | (uint)register);
            a.@out(dx, eax);
            a.mov(dx, (ushort)0xcfc);
        }
        void PrintConfig(int device, int register)
        {
            Config(device, register);
            a.@in(eax, dx);
            a.call(r.PutHex32Line);
        }
        void WriteConfig(int device, int register, uint value)
        {
            Config(device, register);
            a.mov(eax, value);
            a.@out(dx, eax);
        }
        for (var device = 0; device < 4; device++) PrintConfig(device, 0);
        Config(1, 0x10);
        a.@in(eax, dx);
        a.mov(ebx, eax);                       // the BAR firmware chose
        a.call(r.PutHex32Line);
        WriteConfig(1, 0x10, 0xffff_ffff);
        PrintConfig(1, 0x10);                  // the size mask
        WriteConfig(1, 0x10, movedMem);
        PrintConfig(1, 0x10);
        SetDs(a, movedMem);
        a.mov(__byte_ptr[0], 0);               // test 0: mmio-no-eventfd
        a.mov(si, __word_ptr[4]);              // its hit offset
        for (var i = 0; i < 3; i++) a.mov(__byte_ptr[si], PciTestdevDataMatch);
        a.mov(ecx, __dword_ptr[12]);           // count
        a.mov(edi, __dword_ptr[16]);           // "mmio"
        a.shr(ebx, 4);
        a.mov(ds, bx);                         // the old place
        a.mov(ebp, __dword_ptr[12]);
        SetDs(a, 0);
        foreach (var reg in new[] { ecx, edi, ebp })
        {
            a.mov(eax, reg);
            a.call(r.PutHex32Line);
        }
        WriteConfig(1, 0x14, movedIo);
        PrintConfig(1, 0x14);
        a.mov(dx, movedIo);
        a.mov(al, 1);
        a.@out(dx, al);                        // test 1 of the I/O BAR: portio-wildcard-eventfd
        a.add(dx, 4);
        a.@in(ax, dx);                         // its hit offset
        a.mov(bx, ax);
        a.mov(dx, movedIo);
        a.add(dx, bx);
        a.@out(dx, al);
        a.@out(dx, al);
        a.mov(dx, (ushort)(movedIo + 12));
        a.@in(eax, dx);
        a.call(r.PutHex32Line);
        a.hlt();
        r.Emit();
    });

    private const byte PciTestdevDataMatch = 0xfa;

    /// <summary>
    /// Moves pci-testdev's BAR 0 (slot 1) to <paramref name="movedMem"/> (below 1 MiB), selects test 0 there, then
    /// forever: one hit, and the count the device reads back printed as a hex line (1, 2, 3, ...).
    /// </summary>
    public static byte[] PciCountForever(uint movedMem) => Guests.Assemble(16, 0x1000, a =>
    {
        var r = new Routines(a);
        var loop = a.CreateLabel();
        a.mov(dx, (ushort)0xcf8);
        a.mov(eax, 0x8000_0810u);
        a.@out(dx, eax);
        a.mov(dx, (ushort)0xcfc);
        a.mov(eax, movedMem);
        a.@out(dx, eax);
        SetDs(a, movedMem);
        a.mov(__byte_ptr[0], 0);
        a.mov(si, __word_ptr[4]);
        a.Label(ref loop);
        SetDs(a, movedMem);
        a.mov(__byte_ptr[si], PciTestdevDataMatch);
        a.mov(eax, __dword_ptr[12]);
        a.mov(bx, 0);
        a.mov(ds, bx);
        a.call(r.PutHex32Line);
        a.jmp(loop);
        r.Emit();
    });


    /// <summary>
    /// Prints slot 1's vendor/device dword and BAR 0, writes 0x12345678 at offset 0 of that I/O BAR (found in BAR 0)
    /// and prints what offsets 0 and 8 read.
    /// </summary>
    public static byte[] PciPluginProbe() => Guests.Assemble(16, 0x1000, a =>
    {
        var r = new Routines(a);
        a.mov(dx, (ushort)0xcf8);
        a.mov(eax, 0x8000_0800u);
        a.@out(dx, eax);
        a.mov(dx, (ushort)0xcfc);
        a.@in(eax, dx);
        a.call(r.PutHex32Line);
        a.mov(dx, (ushort)0xcf8);
        a.mov(eax, 0x8000_0810u);
        a.@out(dx, eax);
        a.mov(dx, (ushort)0xcfc);
        a.@in(eax, dx);
        a.mov(bx, ax);
        a.and(bx, 0xfffc);
        a.call(r.PutHex32Line);
        a.mov(dx, bx);
        a.mov(eax, 0x1234_5678u);
        a.@out(dx, eax);
        a.@in(eax, dx);
        a.call(r.PutHex32Line);
        a.mov(dx, bx);
        a.add(dx, 8);
        a.@in(eax, dx);
        a.call(r.PutHex32Line);
        a.hlt();
        r.Emit();
    });


    /// <summary>Prints <paramref name="text"/> on COM1, then spins (jmp $) until the VM is stopped.</summary>
    public static byte[] PrintThenSpin(string text) => Guests.Assemble(16, 0x1000, a =>
    {
        var r = new Routines(a);
        var spin = a.CreateLabel();
        r.Print(text);
        a.Label(ref spin);
        a.jmp(spin);
        r.Emit();
    });

    /// <summary>
    /// jmp $ after a debug-exit write. Not HLT: the write reaches the device asynchronously, and a HLT
    /// right behind it could meet the halt policy first and end the VM as Halted (status 0).
    /// </summary>
    private static void SpinUntilStopped(Assembler a)
    {
        var self = a.CreateLabel();
        a.Label(ref self);
        a.jmp(self);
    }

    private static void Out(Assembler a, ushort port, byte value)
    {
        a.mov(dx, port);
        a.mov(al, value);
        a.@out(dx, al);
    }

    private static void SetDs(Assembler a, uint physical)
    {
        a.mov(ax, (ushort)(physical >> 4));
        a.mov(ds, ax);
    }

    /// <summary>Subroutines, emitted after the main code by <see cref="Emit"/>. They need a stack.</summary>
    private sealed class Routines
    {
        private readonly Assembler _a;
        public Label PutC, PutHex8, PutHex32Line, PrintInline;

        public Routines(Assembler a)
        {
            _a = a;
            PutC = a.CreateLabel();
            PutHex8 = a.CreateLabel();
            PutHex32Line = a.CreateLabel();
            PrintInline = a.CreateLabel();
        }

        /// <summary>Prints a string placed right after the call (the routine returns past its NUL).</summary>
        public void Print(string text)
        {
            _a.call(PrintInline);
            _a.db([.. Encoding.ASCII.GetBytes(text), 0]);
        }

        public void Emit()
        {
            var a = _a;
            // putc: AL to COM1 once LSR.THRE is set. Clobbers AH, DX.
            a.Label(ref PutC);
            Guests.EmitPutcAl(a);
            a.ret();

            // puthex8: AL as two lowercase hex digits. Clobbers AX, DX.
            var nibble = a.CreateLabel();
            var digit = a.CreateLabel();
            a.Label(ref PutHex8);
            a.push(ax);
            a.shr(al, 4);
            a.call(nibble);
            a.pop(ax);
            a.and(al, 0x0f);
            a.Label(ref nibble);
            a.add(al, (byte)'0');
            a.cmp(al, (byte)'9');
            a.jbe(digit);
            a.add(al, (byte)('a' - '9' - 1));
            a.Label(ref digit);
            a.jmp(PutC);

            // puthex32line: EAX as eight hex digits and "\n". Clobbers EAX, CX, DX.
            var lane = a.CreateLabel();
            a.Label(ref PutHex32Line);
            a.mov(cx, 4);
            a.Label(ref lane);
            a.rol(eax, 8);
            a.push(eax);
            a.call(PutHex8);
            a.pop(eax);
            a.loop(lane);
            a.mov(al, 10);
            a.jmp(PutC);

            // printinline: the NUL-terminated string at the return address. Clobbers AX, DX, SI.
            var next = a.CreateLabel();
            var end = a.CreateLabel();
            a.Label(ref PrintInline);
            a.pop(si);
            a.Label(ref next);
            a.mov(al, __byte_ptr[si]);
            a.inc(si);
            a.test(al, al);
            a.jz(end);
            a.call(PutC);
            a.jmp(next);
            a.Label(ref end);
            a.jmp(si);
        }
    }
}

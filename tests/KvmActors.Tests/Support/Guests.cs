using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace KvmActors.Tests.Support;

/// <summary>Test guests assembled with Iced (no external assembler at test time).</summary>
public static class Guests
{
    /// <summary>The seed's 12 bytes: dx=0x3f8; al+=bl; al+='0'; out; al='\n'; out; hlt.</summary>
    public static readonly byte[] Seed = Convert.FromHexString("baf80300d80430eeb00aeef4");

    public static string Hex(byte[] bytes) => string.Join(" ", bytes.Select(b => b.ToString("x2")));

    public static byte[] Assemble(int bitness, ulong origin, Action<Assembler> body)
    {
        var a = new Assembler(bitness);
        body(a);
        using var ms = new MemoryStream();
        a.Assemble(new StreamCodeWriter(ms), origin);
        return ms.ToArray();
    }

    /// <summary>
    /// Real mode, at 0x1000: every vCPU takes a spinlock at 0x2000 (xchg is atomic), prints
    /// "hello from vCPU N\n" through COM1 polling LSR.THRE before each byte (N = '0' + SI), releases the
    /// lock and halts. Each vCPU needs its own SP (the config gives it) for the call to putc.
    /// </summary>
    public static byte[] SmpHello()
    {
        return CodeThenText(SmpHelloCode, "hello from vCPU ");
    }

    private static byte[] SmpHelloCode(ushort message) =>
        Assemble(16, 0x1000, a =>
        {
            var spin = a.CreateLabel();
            var loop = a.CreateLabel();
            var index = a.CreateLabel();
            var putc = a.CreateLabel();
            a.Label(ref spin);
            a.mov(al, 1);
            a.xchg(__byte_ptr[0x2000], al);
            a.test(al, al);
            a.jnz(spin);
            a.mov(bx, message);
            a.Label(ref loop);
            a.mov(al, __byte_ptr[bx]);
            a.test(al, al);
            a.jz(index);
            a.call(putc);
            a.inc(bx);
            a.jmp(loop);
            a.Label(ref index);
            a.mov(ax, si);
            a.add(al, (byte)'0');
            a.call(putc);
            a.mov(al, 10);
            a.call(putc);
            a.mov(__byte_ptr[0x2000], 0);
            a.hlt();
            a.Label(ref putc);
            EmitPutcAl(a);
            a.ret();
        });

    /// <summary>Real mode: reads <paramref name="port"/> (16 bits wide), writes both bytes to COM1's data port, halts.</summary>
    public static byte[] EchoPortWord(ushort port) => Assemble(16, 0x1000, a =>
    {
        a.mov(dx, port);
        a.@in(ax, dx);
        a.mov(dx, 0x3f8);
        a.@out(dx, al);
        a.mov(al, ah);
        a.@out(dx, al);
        a.hlt();
    });

    /// <summary>Real mode: reads <paramref name="port"/> (a byte), writes it to COM1's data port, halts.</summary>
    public static byte[] EchoPortByte(ushort port) => Assemble(16, 0x1000, a =>
    {
        a.mov(dx, port);
        a.@in(al, dx);
        a.mov(dx, 0x3f8);
        a.@out(dx, al);
        a.hlt();
    });

    /// <summary>Spins forever without an exit: jmp $.</summary>
    public static readonly byte[] Spin = [0xeb, 0xfe];

    /// <summary>
    /// A real-mode image at 0x1000 whose code is followed by <paramref name="text"/> (NUL-terminated).
    /// The code is assembled twice: once to learn its length (the text's address operand has a fixed
    /// size), then with the text's address.
    /// </summary>
    private static byte[] CodeThenText(Func<ushort, byte[]> code, string text, bool terminate = true)
    {
        var length = code(0).Length;
        var bytes = System.Text.Encoding.ASCII.GetBytes(text);
        return [.. code((ushort)(0x1000 + length)), .. bytes, .. (terminate ? new byte[] { 0 } : [])];
    }

    /// <summary>Writes AL to COM1 once LSR says the transmitter holding register is empty. Clobbers AH, DX.</summary>
    public static void EmitPutcAl(Assembler a)
    {
        var wait = a.CreateLabel();
        a.mov(ah, al);
        a.mov(dx, 0x3fd);
        a.Label(ref wait);
        a.@in(al, dx);
        a.test(al, 0x20);
        a.jz(wait);
        a.mov(dx, 0x3f8);
        a.mov(al, ah);
        a.@out(dx, al);
    }

    /// <summary>Prints the NUL-terminated string at <paramref name="message"/> on COM1, polling LSR.THRE before each byte.</summary>
    private static void EmitPolledPrint(Assembler a, ushort message)
    {
        var loop = a.CreateLabel();
        var wait = a.CreateLabel();
        var done = a.CreateLabel();
        a.mov(si, message);
        a.Label(ref loop);
        a.mov(dx, 0x3fd);
        a.Label(ref wait);
        a.@in(al, dx);
        a.test(al, 0x20);
        a.jz(wait);
        a.mov(al, __byte_ptr[si]);
        a.test(al, al);
        a.jz(done);
        a.mov(dx, 0x3f8);
        a.@out(dx, al);
        a.inc(si);
        a.jmp(loop);
        a.Label(ref done);
    }

    /// <summary>
    /// Real mode at 0x1000: prints <paramref name="text"/> <paramref name="times"/> times on COM1, polling
    /// LSR.THRE before every byte (two exits a byte), then halts.
    /// </summary>
    public static byte[] PrintText(string text, int times = 1) => CodeThenText(message => Assemble(16, 0x1000, a =>
    {
        var outer = a.CreateLabel();
        a.mov(cx, (ushort)times);
        a.Label(ref outer);
        EmitPolledPrint(a, message);
        a.dec(cx);
        a.jnz(outer);
        a.hlt();
    }), text);

    /// <summary>
    /// Real mode: writes 0x5a to the UART's scratch register, prints <paramref name="text"/> (polled),
    /// then reads the scratch register back and prints it as one raw byte, then halts.
    /// </summary>
    public static byte[] PrintTextThenScratch(string text) => CodeThenText(message => Assemble(16, 0x1000, a =>
    {
        a.mov(dx, 0x3ff);
        a.mov(al, 0x5a);
        a.@out(dx, al);
        EmitPolledPrint(a, message);
        a.mov(dx, 0x3ff);
        a.@in(al, dx);
        a.mov(dx, 0x3f8);
        a.@out(dx, al);
        a.hlt();
    }), text);

    /// <summary>Real mode: one rep outsb of <paramref name="text"/> to COM1 (a single string-I/O exit, or a few), then halts.</summary>
    public static byte[] RepOutsb(string text) => CodeThenText(message => Assemble(16, 0x1000, a =>
    {
        a.mov(si, message);
        a.mov(cx, (ushort)text.Length);
        a.mov(dx, 0x3f8);
        a.cld();
        a.rep.outsb();
        a.hlt();
    }), text, terminate: false);

    /// <summary>Real mode: reads a byte at guest-physical 0x20000 (unbacked when RAM is 64K: an MMIO exit), prints it, halts.</summary>
    public static byte[] ReadUnbackedMemory() => Assemble(16, 0x1000, a =>
    {
        a.mov(ax, 0x2000);
        a.mov(ds, ax);
        a.mov(al, __byte_ptr[0]);
        a.mov(dx, 0x3f8);
        a.@out(dx, al);
        a.hlt();
    });
}

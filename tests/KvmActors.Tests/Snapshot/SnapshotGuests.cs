using System.Buffers.Binary;
using Iced.Intel;
using KvmActors.Tests.Platform;
using KvmActors.Tests.Support;
using static Iced.Intel.AssemblerRegisters;
using static KvmActors.Tests.Platform.PlatformGuests;

namespace KvmActors.Tests.Snapshot;

/// <summary>
/// The example guest of snapshot, restore and live migration (hocon/guests/counter.conf): an irqchip SMP guest
/// whose vCPUs share one numbered sequence of lines and keep state where a lost restore would show: in memory
/// (the counter, the pages above 1 MiB) and in the UART (its scratch register). Its output is the same bytes
/// whatever the interleaving of vCPUs, so an interrupted and restored run can be compared with an uninterrupted one.
/// </summary>
/// <remarks>
/// The boot vCPU enters 32-bit protected mode at <see cref="CounterEntry"/> with EDI = lines to print, ESI = delay
/// loop iterations after each line, EDX = pages above 1 MiB to keep writing (0: none). It stores them, reads the
/// CPU count from fw_cfg and wakes the other vCPUs with INIT/SIPI/SIPI; they start at <see cref="CounterLoad"/> in
/// real mode, load the image's GDT and join the same 32-bit code. Then every vCPU loops: take the spinlock (xchg);
/// if counter = limit, count itself done; else check COM1's scratch register holds the counter's low byte (else
/// "UART STATE LOST", exit <see cref="UartLostExit"/>), counter++, scratch = its low byte; with pages, check page
/// (counter % pages) holds counter - pages (0 before its first write; else "MEMORY STATE LOST", exit
/// <see cref="MemoryLostExit"/>) and write counter there; print "line NNNNNN\n"; release; delay. When every vCPU is
/// done the boot vCPU prints "done NNNNNN lines\n" and exits with <see cref="DoneExit"/>; the others park in cli/hlt.
/// </remarks>
public static class SnapshotGuests
{
    /// <summary>The image's load address; the APs' real-mode start (SIPI vector 0x08) is its first byte.</summary>
    public const uint CounterLoad = 0x8000;
    /// <summary>The image's own GDT (null, flat code32 = 0x08, flat data = 0x10) and the GDTR pointing at it.</summary>
    public const uint CounterGdt = 0x8040, CounterGdtr = 0x8058;
    /// <summary>The 32-bit entry of every vCPU: the boot vCPU's rip; the APs jump here from real mode.</summary>
    public const uint CounterEntry = 0x8100;
    public const byte CounterSipiVector = (byte)(CounterLoad >> 12);

    /// <summary>Shared variables (below the image; the ACPI tables take 0xe0000 up).</summary>
    public const uint LockAddress = 0x9000, CounterAddress = 0x9004, LimitAddress = 0x9008, DelayAddress = 0x900c,
        PagesAddress = 0x9010, DoneAddress = 0x9014, CpusAddress = 0x9018;

    /// <summary>The pages the guest keeps writing start here: page p is at 1 MiB + p * 4 KiB.</summary>
    public const uint PagesBase = 0x100000;
    public const int PageSize = 4096;

    /// <summary>debug-exit values: the run's exit status is <see cref="PlatformGuests.ExitStatus"/> of them (99, 101, 103).</summary>
    public const byte DoneExit = 0x31, UartLostExit = 0x32, MemoryLostExit = 0x33;

    public const string UartLostText = "UART STATE LOST\n", MemoryLostText = "MEMORY STATE LOST\n";

    /// <summary>The conf's defaults for EDI, ESI and EDX.</summary>
    public const int DefaultLines = 2000, DefaultDelay = 0, DefaultPages = 0;

    private const ushort Com1Scratch = Com1 + 7;
    private const int Digits = 6;

    /// <summary>Exit statuses of the run (debug-exit: (v &lt;&lt; 1) | 1).</summary>
    public static int DoneStatus => ExitStatus(DoneExit);
    public static int UartLostStatus => ExitStatus(UartLostExit);
    public static int MemoryLostStatus => ExitStatus(MemoryLostExit);

    /// <summary>One line of the sequence: "line 000042\n".</summary>
    public static string Line(int n) => $"line {n:D6}\n";

    /// <summary>Everything a run of <paramref name="lines"/> lines prints, whatever the vCPU count.</summary>
    public static string CounterOutput(int lines) =>
        string.Concat(Enumerable.Range(1, lines).Select(Line)) + $"done {lines:D6} lines\n";

    /// <summary>hocon/guests/counter.conf.</summary>
    public static string ConfPath => Path.Combine(RepoRoot.Path, "hocon", "guests", "counter.conf");

    /// <summary>
    /// The overrides (<c>key=value</c>, for <c>--set</c> or <see cref="KvmActors.Runtime.Config.GuestConfigLoader"/>) that
    /// change the conf's parameters: lines (EDI), delay (ESI), pages (EDX), vCPUs, and one RAM region [0, ramSize).
    /// </summary>
    public static IReadOnlyList<string> Overrides(int? lines = null, int? delay = null, int? pages = null, int? vcpus = null, ulong? ramSize = null)
    {
        var sets = new List<string>();
        if (lines is { } l) sets.Add($"guest.cpu.registers.rdi={l}");
        if (delay is { } d) sets.Add($"guest.cpu.registers.rsi={d}");
        if (pages is { } p) sets.Add($"guest.cpu.registers.rdx={p}");
        if (vcpus is { } v) sets.Add($"guest.vcpus={v}");
        if (ramSize is { } r) sets.Add($"guest.memory=[{{name=ram,address=0,size={r}}}]");
        return sets;
    }

    /// <summary>The migration variant: 64 MiB of RAM, every page from 1 MiB up written in turn.</summary>
    public static IReadOnlyList<string> Migration64MiB(int lines) => Overrides(lines, pages: PagesFor(64UL << 20), ramSize: 64UL << 20);

    /// <summary>How many pages above 1 MiB a guest with RAM [0, <paramref name="ramSize"/>) can keep writing (16128 for 64 MiB).</summary>
    public static int PagesFor(ulong ramSize) => checked((int)((ramSize - PagesBase) / PageSize));

    /// <summary>The image of hocon/guests/counter.conf, loaded at <see cref="CounterLoad"/>; the boot vCPU enters at <see cref="CounterEntry"/>.</summary>
    public static byte[] Counter()
    {
        var trampoline = ApTrampoline();
        var code = CounterCode();
        var image = new byte[CounterEntry - CounterLoad + code.Length];
        if (trampoline.Length > CounterGdt - CounterLoad) throw new InvalidOperationException("the AP trampoline overlaps the GDT");
        trampoline.CopyTo(image, 0);
        ulong[] gdt = [0, 0x00cf9a000000ffff, 0x00cf92000000ffff]; // null, flat code32 (0x08), flat data (0x10)
        for (var i = 0; i < gdt.Length; i++)
            BinaryPrimitives.WriteUInt64LittleEndian(image.AsSpan((int)(CounterGdt - CounterLoad) + i * 8), gdt[i]);
        BinaryPrimitives.WriteUInt16LittleEndian(image.AsSpan((int)(CounterGdtr - CounterLoad)), (ushort)(gdt.Length * 8 - 1));
        BinaryPrimitives.WriteUInt32LittleEndian(image.AsSpan((int)(CounterGdtr - CounterLoad) + 2), CounterGdt);
        code.CopyTo(image, (int)(CounterEntry - CounterLoad));
        return image;
    }

    /// <summary>The conf's inline hex: 32 bytes a line, indented for the conf's <c>inline = """ … """</c>.</summary>
    public static string InlineHex(byte[] image) =>
        string.Join("\n", image.Chunk(32).Select(c => "      " + Guests.Hex(c)));

    /// <summary>Real mode at the SIPI page (CS = 0x0800, IP = 0): load the image's GDT, set CR0.PE, far-jump to the 32-bit entry.</summary>
    private static byte[] ApTrampoline() => Guests.Assemble(16, CounterLoad, a =>
    {
        a.cli();
        a.xor(ax, ax);
        a.mov(ds, ax);
        a.lgdt(__[CounterGdtr]);
        a.mov(eax, cr0);
        a.or(eax, 1);
        a.mov(cr0, eax);
        a.jmp(0x08, CounterEntry);
    });

    private static byte[] CounterCode() => CodeAndData(32, CounterEntry, (a, addr) =>
    {
        var worker = a.CreateLabel();
        var tryLock = a.CreateLabel();
        var noBorrow = a.CreateLabel();
        var print = a.CreateLabel();
        var delay = a.CreateLabel();
        var done = a.CreateLabel();
        var waitAll = a.CreateLabel();
        var park = a.CreateLabel();
        var uartLost = a.CreateLabel();
        var memoryLost = a.CreateLabel();
        var started = a.CreateLabel();
        var sendIpi = a.CreateLabel();

        // Every vCPU: the image's GDT and flat data segments (the APs still have real-mode ones).
        a.lgdt(__[CounterGdtr]);
        a.mov(ax, 0x10);
        a.mov(ds, ax);
        a.mov(es, ax);
        a.mov(ss, ax);
        a.mov(ebp, edx); // the boot vCPU's page count: CPUID clobbers EDX
        a.mov(eax, 1);
        a.cpuid();
        a.shr(ebx, 24); // EBX = APIC id (= vCPU index) for the rest of the code
        a.jnz(worker);

        // Boot vCPU: the parameters, fresh shared state, SCR = low byte of counter 0.
        a.mov(__dword_ptr[LimitAddress], edi);
        a.mov(__dword_ptr[DelayAddress], esi);
        a.mov(__dword_ptr[PagesAddress], ebp);
        a.mov(__dword_ptr[CounterAddress], 0);
        a.mov(__dword_ptr[DoneAddress], 0);
        a.mov(__byte_ptr[LockAddress], 0);
        a.mov(dx, Com1Scratch);
        a.xor(al, al);
        a.@out(dx, al);
        EmitCpuCountToEbx(a);
        a.mov(__dword_ptr[CpusAddress], ebx);
        EmitStartAps(a, CounterSipiVector, sendIpi, started);
        a.Label(ref started);
        a.xor(ebx, ebx); // the boot vCPU's APIC id again

        // The shared loop. EBX = APIC id throughout; ECX = the new counter value.
        a.Label(ref worker);
        a.cmp(__byte_ptr[LockAddress], 0);
        a.je(tryLock);
        a.pause();
        a.jmp(worker);
        a.Label(ref tryLock);
        a.mov(al, 1);
        a.xchg(__byte_ptr[LockAddress], al);
        a.test(al, al);
        a.jnz(worker);
        a.mov(ecx, __dword_ptr[CounterAddress]);
        a.cmp(ecx, __dword_ptr[LimitAddress]);
        a.je(done);
        // The UART keeps the low byte of the counter in its scratch register.
        a.mov(dx, Com1Scratch);
        a.@in(al, dx);
        a.cmp(al, cl);
        a.jne(uartLost);
        a.inc(ecx);
        a.mov(__dword_ptr[CounterAddress], ecx);
        a.mov(al, cl);
        a.@out(dx, al);
        // Page (counter % pages) holds the counter that last wrote it: counter - pages, or 0 before the first.
        a.mov(esi, __dword_ptr[PagesAddress]);
        a.test(esi, esi);
        a.jz(print);
        a.mov(eax, ecx);
        a.xor(edx, edx);
        a.div(esi);
        a.shl(edx, 12);
        a.add(edx, PagesBase);
        a.mov(eax, ecx);
        a.sub(eax, esi);
        a.jae(noBorrow);
        a.xor(eax, eax);
        a.Label(ref noBorrow);
        a.cmp(__dword_ptr[edx], eax);
        a.jne(memoryLost);
        a.mov(__dword_ptr[edx], ecx);
        a.Label(ref print);
        a.mov(eax, ecx);
        EmitZeroPadded(a, addr("line") + 5);
        EmitPrint(a, 32, addr("line"));
        a.mov(__byte_ptr[LockAddress], 0);
        a.mov(ecx, __dword_ptr[DelayAddress]);
        a.test(ecx, ecx);
        a.jz(worker);
        a.Label(ref delay);
        a.pause();
        a.dec(ecx);
        a.jnz(delay);
        a.jmp(worker);

        // Counted out: the APs park; the boot vCPU waits for all, prints the total and ends the VM.
        a.Label(ref done);
        a.mov(__byte_ptr[LockAddress], 0);
        a.@lock.inc(__dword_ptr[DoneAddress]);
        a.test(ebx, ebx);
        a.jnz(park);
        a.mov(ecx, __dword_ptr[CpusAddress]);
        a.Label(ref waitAll);
        a.pause();
        a.cmp(__dword_ptr[DoneAddress], ecx);
        a.jne(waitAll);
        a.mov(eax, __dword_ptr[CounterAddress]);
        EmitZeroPadded(a, addr("done") + 5);
        EmitPrint(a, 32, addr("done"));
        EmitExit(a, DoneExit);
        a.Label(ref park);
        a.cli();
        a.hlt();
        a.jmp(park);

        // State lost (the lock is still held, so nothing else prints).
        a.Label(ref uartLost);
        EmitPrint(a, 32, addr("uart"));
        EmitExit(a, UartLostExit);
        a.Label(ref memoryLost);
        EmitPrint(a, 32, addr("memory"));
        EmitExit(a, MemoryLostExit);

        EmitSendIpi(a, ref sendIpi);
    }, ("line", Z("line 000000\n")), ("done", Z("done 000000 lines\n")),
       ("uart", Z(UartLostText)), ("memory", Z(MemoryLostText)));

    /// <summary>Write EAX modulo 10^6 as six decimal digits at <paramref name="at"/>. Clobbers EAX, EDX, ESI, EDI.</summary>
    private static void EmitZeroPadded(Assembler a, uint at)
    {
        var loop = a.CreateLabel();
        a.mov(edi, at + Digits);
        a.mov(esi, 10);
        a.Label(ref loop);
        a.xor(edx, edx);
        a.div(esi);
        a.add(dl, (byte)'0');
        a.dec(edi);
        a.mov(__byte_ptr[edi], dl);
        a.cmp(edi, at);
        a.jne(loop);
    }
}

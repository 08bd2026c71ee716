using Iced.Intel;
using KvmActors.Tests.Support;
using static Iced.Intel.AssemblerRegisters;

namespace KvmActors.Tests.Acpi;

/// <summary>Guests (Iced, flat 32-bit protected mode) that use the ACPI tables, the PM timer and the RTC.</summary>
public static class AcpiGuests
{
    public const ulong Load = 0x8000;
    public const byte NoRsdp = 0x10, NoFadt = 0x11, Done = 0x20;

    /// <summary>
    /// Scans 0xe0000-0xfffff for "RSD PTR " on 16-byte boundaries, follows the RSDT to the FADT, takes the PM
    /// timer port from it; then waits for the RTC's seconds to change twice (CMOS register 0 through 0x70/0x71),
    /// reading the PM timer at each change, and prints both readings as 8 hex digits each on COM1
    /// ("T1 T2\n"): one RTC second apart, they should differ by 3579545 (mod 2^24). Exits through
    /// debug-exit with <see cref="Done"/> (or <see cref="NoRsdp"/>/<see cref="NoFadt"/>).
    /// </summary>
    public static byte[] PmTimerAgainstRtc() => Guests.Assemble(32, Load, a =>
    {
        var scan = a.CreateLabel(); var next = a.CreateLabel(); var found = a.CreateLabel();
        var walk = a.CreateLabel(); var fadt = a.CreateLabel(); var fail = a.CreateLabel();
        a.mov(esi, 0xe0000);
        a.Label(ref scan);
        a.cmp(__dword_ptr[esi], 0x20445352);      // "RSD "
        a.jne(next);
        a.cmp(__dword_ptr[esi + 4], 0x20525450);  // "PTR "
        a.je(found);
        a.Label(ref next);
        a.add(esi, 16);
        a.cmp(esi, 0x100000);
        a.jb(scan);
        a.mov(al, NoRsdp);
        a.jmp(fail);

        a.Label(ref found);
        a.mov(esi, __dword_ptr[esi + 16]);        // RSDT
        a.mov(ecx, __dword_ptr[esi + 4]);
        a.sub(ecx, 36);
        a.shr(ecx, 2);
        a.lea(edi, __[esi + 36]);
        a.Label(ref walk);
        a.mov(eax, __dword_ptr[edi]);
        a.cmp(__dword_ptr[eax], 0x50434146);      // "FACP"
        a.je(fadt);
        a.add(edi, 4);
        a.dec(ecx);
        a.jnz(walk);
        a.mov(al, NoFadt);
        a.jmp(fail);

        a.Label(ref fadt);
        a.mov(ebp, __dword_ptr[eax + 76]);        // PM_TMR_BLK
        a.mov(edx, ebp);                          // a first read, so the timed ones find the device warm
        a.@in(eax, dx);
        WaitSecondChange(a);
        a.mov(edx, ebp);
        a.@in(eax, dx);
        a.mov(__dword_ptr[0x9000], eax);
        WaitSecondChange(a);
        a.mov(edx, ebp);
        a.@in(eax, dx);
        a.mov(__dword_ptr[0x9004], eax);
        a.mov(eax, __dword_ptr[0x9000]);
        PrintHex(a);
        a.mov(al, (byte)' ');
        Putc(a);
        a.mov(eax, __dword_ptr[0x9004]);
        PrintHex(a);
        a.mov(al, (byte)'\n');
        Putc(a);
        a.mov(al, Done);
        a.Label(ref fail);
        a.@out(0xf4, al);
        var spin = a.CreateLabel();
        a.Label(ref spin);
        a.jmp(spin);
    });

    /// <summary>Reads RTC seconds into BL, then spins until they differ. Clobbers AL, BL.</summary>
    private static void WaitSecondChange(Assembler a)
    {
        var wait = a.CreateLabel();
        a.mov(al, 0);
        a.@out(0x70, al);
        a.@in(al, 0x71);
        a.mov(bl, al);
        a.Label(ref wait);
        a.@in(al, 0x71);
        a.cmp(al, bl);
        a.je(wait);
    }

    private static void Putc(Assembler a)
    {
        a.mov(dx, 0x3f8);
        a.@out(dx, al);
    }

    /// <summary>Prints EAX as 8 hex digits on COM1. Clobbers EAX, ECX, EDX, ESI.</summary>
    private static void PrintHex(Assembler a)
    {
        var digit = a.CreateLabel(); var low = a.CreateLabel();
        a.mov(esi, eax);
        a.mov(ecx, 8);
        a.Label(ref digit);
        a.rol(esi, 4);
        a.mov(eax, esi);
        a.and(al, 0x0f);
        a.add(al, (byte)'0');
        a.cmp(al, (byte)'9');
        a.jbe(low);
        a.add(al, 'a' - '0' - 10);
        a.Label(ref low);
        Putc(a);
        a.dec(ecx);
        a.jnz(digit);
    }
}

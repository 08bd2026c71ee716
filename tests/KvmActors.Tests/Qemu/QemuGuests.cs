using Iced.Intel;
using KvmActors.Tests.Support;
using static Iced.Intel.AssemblerRegisters;

namespace KvmActors.Tests.Qemu;

/// <summary>Guests (Iced, flat 32-bit protected mode, paging off) for the QEMU-machine devices.</summary>
public static class QemuGuests
{
    public const ulong Load = 0x8000;
    private const uint Idt = 0x9000, Idtr = 0x9800;
    private const uint IoApic = 0xfec00000, LocalApic = 0xfee00000;
    public const int IrqLine = 14, Vector = 0x20;

    /// <summary>A guest file: <paramref name="image"/> at <paramref name="load"/> in protected mode with the irqchip (so ACPI too) and <paramref name="devices"/>.</summary>
    public static string ProtectedIrqchipGuest(byte[] image, ulong load, string devices) => $$"""
        guest {
          irqchip = true
          image {
            inline = "{{Guests.Hex(image)}}"
            load-address = {{load}}
          }
          cpu.mode = protected
          devices {
            {{devices}}
          }
        }
        """;

    /// <summary>
    /// Masks the PIC, installs an IDT gate for vector 0x20, enables the local APIC, routes IOAPIC pin 14 to vector
    /// 0x20 (edge, fixed, APIC 0), sti, and raises line 14 through pc-testdev (out 0x200e, 1) with EBX = 0; one
    /// nop later EBX = 1. The handler exits through debug-exit with v = 0x41 + EBX: 0x41 when the interrupt was
    /// taken right after the OUT (as kvm-unit-tests' ioapic test checks), 0x42 later; 0x40 if it never came.
    /// The handler does not return: this software KVM cannot emulate a protected-mode IRET.
    /// </summary>
    public static byte[] PcTestdevIrq()
    {
        var main = PcTestdevIrqMain();
        if (main.Length > HandlerOffset) throw new InvalidOperationException("main code overlaps the handler");
        return [.. main, .. new byte[HandlerOffset - main.Length], .. ExitHandler()];
    }

    private const int HandlerOffset = 0x100;
    private const uint Handler = (uint)Load + HandlerOffset;

    private static byte[] ExitHandler() => Guests.Assemble(32, Handler, a =>
    {
        a.lea(eax, __[ebx + 0x41]);
        a.@out(0xf4, al);
        var spin = a.CreateLabel();
        a.Label(ref spin);
        a.jmp(spin);
    });

    /// <summary>
    /// Masks both PICs (only the IOAPIC delivers), installs an IDT gate for vector 0x20 to the handler, enables the
    /// local APIC and routes IOAPIC pin <paramref name="line"/> to vector 0x20 (edge, fixed, APIC 0).
    /// </summary>
    private static void RouteLineToHandler(Assembler a, int line)
    {
        a.mov(al, 0xff);
        a.@out(0x21, al);
        a.@out(0xa1, al);
        a.mov(eax, Handler);                           // IDT gate: 32-bit interrupt gate, CS 0x08
        a.mov(__word_ptr[Idt + Vector * 8], ax);
        a.mov(__word_ptr[Idt + Vector * 8 + 2], 0x08);
        a.mov(__word_ptr[Idt + Vector * 8 + 4], 0x8e00);
        a.shr(eax, 16);
        a.mov(__word_ptr[Idt + Vector * 8 + 6], ax);
        a.mov(__word_ptr[Idtr], 0x7ff);
        a.mov(__dword_ptr[Idtr + 2], Idt);
        a.lidt(__[Idtr]);
        a.mov(__dword_ptr[LocalApic + 0xf0], 0x1ff);  // SPIV: APIC software-enabled, spurious vector 0xff
        a.mov(__dword_ptr[IoApic], (uint)(0x10 + 2 * line)); // redirection entry, low half
        a.mov(__dword_ptr[IoApic + 0x10], Vector);
        a.mov(__dword_ptr[IoApic], (uint)(0x11 + 2 * line)); // high half: destination APIC 0
        a.mov(__dword_ptr[IoApic + 0x10], 0);
    }

    private static byte[] PcTestdevIrqMain() => Guests.Assemble(32, Load, a =>
    {
        RouteLineToHandler(a, IrqLine);
        a.@out(0xe0, al);                              // a write and a read-back: the device actor is up and idle
        a.@in(al, 0xe0);
        a.xor(ebx, ebx);
        a.sti();
        a.mov(dx, (ushort)(0x2000 + IrqLine));
        a.mov(al, 1);
        a.@out(dx, al);
        a.nop();
        a.mov(ebx, 1);
        a.mov(ecx, 100000);                             // give a late interrupt time to arrive
        var wait = a.CreateLabel();
        a.Label(ref wait);
        a.dec(ecx);
        a.jnz(wait);
        a.cli();
        a.mov(al, 0x40);
        a.@out(0xf4, al);
        var spin = a.CreateLabel();
        a.Label(ref spin);
        a.jmp(spin);
    });

    /// <summary>
    /// The RTC's update-ended interrupt through IOAPIC pin 8: routes pin 8 to the handler, turns the periodic rate off
    /// (register A 0x20), enables UIE (register B 0x12), clears register C, and halts with interrupts on. The handler
    /// reads register C and exits through debug-exit with v = C &gt;&gt; 4: 9 (IRQF and UF) when the update interrupt
    /// came (a C of 0 is an edge latched before the guest cleared it: the handler waits for the next one, nesting).
    /// Without it the guest sleeps until the run's timeout.
    /// </summary>
    public static byte[] RtcUpdateIrq()
    {
        var main = Guests.Assemble(32, Load, a =>
        {
            RouteLineToHandler(a, 8);
            foreach (var (reg, value) in new (byte, byte)[] { (0x0a, 0x20), (0x0b, 0x12) })
            {
                a.mov(al, reg);
                a.@out(0x70, al);
                a.mov(al, value);
                a.@out(0x71, al);
            }
            a.mov(al, 0x0c);
            a.@out(0x70, al);
            a.@in(al, 0x71);
            a.sti();
            var sleep = a.CreateLabel();
            a.Label(ref sleep);
            a.hlt();
            a.jmp(sleep);
        });
        var handler = Guests.Assemble(32, Handler, a =>
        {
            var start = a.CreateLabel();
            var flags = a.CreateLabel();
            a.Label(ref start);
            a.mov(al, 0x0c);
            a.@out(0x70, al);
            a.@in(al, 0x71);
            a.test(al, al);
            a.jnz(flags);
            a.sti();                // an edge latched before the guest cleared C: wait for the next one
            a.hlt();
            a.jmp(start);
            a.Label(ref flags);
            a.shr(al, 4);
            a.@out(0xf4, al);
            var spin = a.CreateLabel();
            a.Label(ref spin);
            a.jmp(spin);
        });
        if (main.Length > HandlerOffset) throw new InvalidOperationException("main code overlaps the handler");
        return [.. main, .. new byte[HandlerOffset - main.Length], .. handler];
    }
}

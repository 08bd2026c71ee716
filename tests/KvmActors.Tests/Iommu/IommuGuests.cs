using Iced.Intel;
using KvmActors.Tests.Support;
using static Iced.Intel.AssemblerRegisters;

namespace KvmActors.Tests.Iommu;

/// <summary>
/// A guest (Iced, flat 32-bit protected mode, paging off) for a q35 machine with a split irqchip, an intel-iommu and
/// an edu device in slot 1 (requester 00:01.0 = 0x08): it builds the VT-d tables itself, DMAs through them, provokes a
/// fault, and takes the edu's interrupt through the remapped IOAPIC and as a remapped MSI.
/// </summary>
public static class IommuGuests
{
    public const ulong Load = 0x8000;
    private const uint Idt = 0x9000, Idtr = 0x9800, Stack = 0x7000;
    private const uint IoApic = 0xfec00000, LocalApic = 0xfee00000, Vtd = 0xfed90000;
    private const uint Root = 0x10000, Ctx = 0x11000, L3 = 0x12000, L2 = 0x13000, L1 = 0x14000, Irt = 0x15000, Data = 0x20000;
    private const uint Word = 0xcafef00d;
    public const int EduLine = 10; // slot 1, pin A: the layout's PIRQ routing
    private const byte IoapicVector = 0x30, MsiVector = 0x31;
    private const uint Stage2 = (uint)Load + 0x400, IoapicHandler = (uint)Load + 0x600, MsiHandler = (uint)Load + 0x700;

    /// <summary>Check bits in ESI, reported as debug-exit v = 0x10 | ESI.</summary>
    public const int DmaRoundTrip = 1, FaultRecorded = 2, IoapicRemapped = 4, MsiRemapped = 8, AllPassed = 0x1f;

    public static string Guest(string extraDevices = "") => $$"""
        guest {
          irqchip = split
          acpi = false
          memory = [ { name = ram, address = 0, size = 1048576 } ]
          image {
            inline = "{{Guests.Hex(Image())}}"
            load-address = {{Load}}
          }
          cpu.mode = protected
          devices {
            ioapic { type = ioapic, mmio = ["0xfec00000-0xfec00fff"] }
            pic { type = i8259, ports = ["0x20-0x21", "0xa0-0xa1"] }
            pci { type = pci-host, ports = ["0xcf8-0xcff"], options { chipset = q35 } }
            iommu { type = intel-iommu, mmio = ["0xfed90000-0xfed90fff"] }
            edu.type = edu
            exit { type = debug-exit, ports = ["0xf4"] }
            {{extraDevices}}
          }
        }
        """;

    public static byte[] Image()
    {
        var main = Guests.Assemble(32, Load, MainCode);
        var stage2 = Guests.Assemble(32, Stage2, Stage2Code);
        var h1 = Guests.Assemble(32, IoapicHandler, a => Handler(a, IoapicRemapped, ackThenGoTo: Stage2));
        var h2 = Guests.Assemble(32, MsiHandler, a => Handler(a, MsiRemapped, ackThenGoTo: 0));
        if (main.Length > 0x400 || stage2.Length > 0x200 || h1.Length > 0x100) throw new InvalidOperationException("guest pieces overlap");
        return [.. main, .. new byte[0x400 - main.Length], .. stage2, .. new byte[0x200 - stage2.Length], .. h1, .. new byte[0x100 - h1.Length], .. h2];
    }

    private static void Gate(Assembler a, byte vector, uint handler)
    {
        a.mov(__word_ptr[Idt + vector * 8], (ushort)handler);
        a.mov(__word_ptr[Idt + vector * 8 + 2], 0x08);
        a.mov(__word_ptr[Idt + vector * 8 + 4], 0x8e00);
        a.mov(__word_ptr[Idt + vector * 8 + 6], (ushort)(handler >> 16));
    }

    private static void Config(Assembler a, int register)
    {
        a.mov(dx, 0xcf8);
        a.mov(eax, 0x8000_0000u | 1u << 11 | (uint)register);
        a.@out(dx, eax);
        a.mov(dx, 0xcfc);
    }

    private static void Gcmd(Assembler a, uint bit)
    {
        var wait = a.CreateLabel();
        a.mov(eax, __dword_ptr[Vtd + 0x1c]);
        a.or(eax, bit);
        a.mov(__dword_ptr[Vtd + 0x18], eax);
        a.Label(ref wait);
        a.test(__dword_ptr[Vtd + 0x1c], bit);
        a.jz(wait);
    }

    private static void EduDma(Assembler a, uint src, uint dst, uint cmd)
    {
        a.mov(__dword_ptr[edi + 0x80], src);
        a.mov(__dword_ptr[edi + 0x84], 0);
        a.mov(__dword_ptr[edi + 0x88], dst);
        a.mov(__dword_ptr[edi + 0x8c], 0);
        a.mov(__dword_ptr[edi + 0x90], 4);
        a.mov(__dword_ptr[edi + 0x94], 0);
        a.mov(__dword_ptr[edi + 0x98], cmd);
        var wait = a.CreateLabel();
        a.Label(ref wait);
        a.test(__dword_ptr[edi + 0x98], 1);
        a.jnz(wait);
    }

    private static void Exit(Assembler a)
    {
        a.mov(eax, esi);
        a.or(al, 0x10);
        a.@out(0xf4, al);
        var spin = a.CreateLabel();
        a.Label(ref spin);
        a.jmp(spin);
    }

    private static void MainCode(Assembler a)
    {
        a.mov(esp, Stack);
        a.xor(esi, esi);
        a.mov(al, 0xff);                                // the PICs masked, as kvm-unit-tests does
        a.@out(0x21, al);
        a.@out(0xa1, al);
        Gate(a, IoapicVector, IoapicHandler);
        Gate(a, MsiVector, MsiHandler);
        a.mov(__word_ptr[Idtr], 0x7ff);
        a.mov(__dword_ptr[Idtr + 2], Idt);
        a.lidt(__[Idtr]);
        a.mov(__dword_ptr[LocalApic + 0xf0], 0x1ff);   // SPIV: enabled

        // edu's BAR 0 (where the layout put it), bus mastering on.
        Config(a, 0x10);
        a.@in(eax, dx);
        a.and(eax, ~0xfu);
        a.mov(edi, eax);
        Config(a, 0x04);
        a.mov(eax, 0x0006u);
        a.@out(dx, eax);

        // Second-level tables for 00:01.0: IOVA 0x1000 → Data (read/write), nothing else.
        a.mov(__dword_ptr[Root], Ctx | 1);
        a.mov(__dword_ptr[Ctx + 0x08 * 16], L3 | 1);     // present, multi-level translation
        a.mov(__dword_ptr[Ctx + 0x08 * 16 + 8], 0x0801); // AW 39 bits, domain 8
        a.mov(__dword_ptr[L3], L2 | 3);
        a.mov(__dword_ptr[L2], L1 | 3);
        a.mov(__dword_ptr[L1 + 8], Data | 3);
        a.mov(__dword_ptr[Data], Word);
        // IRTE 1: vector 0x30, IRTE 2: vector 0x31; fixed, physical, edge, destination APIC 0, SID 00:01.0 verified.
        foreach (var (index, vector) in new[] { (1, IoapicVector), (2, MsiVector) })
        {
            a.mov(__dword_ptr[Irt + index * 16], 1u | (uint)vector << 16);
            a.mov(__dword_ptr[Irt + index * 16 + 8], 0x08u | 1u << 18);
        }

        a.mov(__dword_ptr[Vtd + 0x20], Root);
        a.mov(__dword_ptr[Vtd + 0x24], 0);
        Gcmd(a, 1u << 30);                              // SRTP
        a.mov(__dword_ptr[Vtd + 0xb8], Irt | 7);        // 256 entries
        a.mov(__dword_ptr[Vtd + 0xbc], 0);
        Gcmd(a, 1u << 24);                              // SIRTP
        Gcmd(a, 1u << 31);                              // TE
        Gcmd(a, 1u << 25);                              // IRE

        // DMA the word to the device's buffer and back to IOVA 0x1004.
        EduDma(a, 0x1000, 0x40000, 1);
        EduDma(a, 0x40000, 0x1004, 3);
        var noCopy = a.CreateLabel();
        a.cmp(__dword_ptr[Data + 4], Word);
        a.jne(noCopy);
        a.or(esi, DmaRoundTrip);
        a.Label(ref noCopy);

        // A write to unmapped IOVA 0x5000: blocked, recorded (FSTS.PPF; reason 5, write, SID 0x08).
        EduDma(a, 0x40000, 0x5000, 3);
        var noFault = a.CreateLabel();
        a.test(__dword_ptr[Vtd + 0x34], 2);
        a.jz(noFault);
        a.mov(eax, __dword_ptr[Vtd + 0x22c]);
        a.cmp(eax, 0x8000_0005u);
        a.jne(noFault);
        a.cmp(__dword_ptr[Vtd + 0x228], 0x08);
        a.jne(noFault);
        a.or(esi, FaultRecorded);
        a.Label(ref noFault);

        // IOAPIC pin 10 in remappable format, index 1 (bits 63:49), edge, unmasked; then raise edu's INTx.
        a.mov(__dword_ptr[IoApic], (uint)(0x11 + 2 * EduLine));
        a.mov(__dword_ptr[IoApic + 0x10], 1u << 16 | 1u << 17);
        a.mov(__dword_ptr[IoApic], (uint)(0x10 + 2 * EduLine));
        a.mov(__dword_ptr[IoApic + 0x10], IoapicVector);
        a.sti();
        a.mov(__dword_ptr[edi + 0x60], 1);
        Wait(a);
    }

    private static void Stage2Code(Assembler a)
    {
        // MSI in remappable format: handle 2 in address bits 19:5, format bit 4; data 0 (no subhandle).
        Config(a, 0x44);
        a.mov(eax, 0xfee0_0050u);
        a.@out(dx, eax);
        Config(a, 0x48);
        a.xor(eax, eax);
        a.@out(dx, eax);
        Config(a, 0x4c);
        a.@out(dx, eax);
        Config(a, 0x40);
        a.mov(dx, 0xcfe);
        a.mov(ax, 1);                                   // MSI control: enable
        a.@out(dx, ax);
        a.sti();
        a.mov(__dword_ptr[edi + 0x60], 1);
        Wait(a);
    }

    /// <summary>Waits a while for an interrupt; if none comes, exits with the checks so far.</summary>
    private static void Wait(Assembler a)
    {
        a.mov(ecx, 200000);
        var wait = a.CreateLabel();
        a.Label(ref wait);
        a.dec(ecx);
        a.jnz(wait);
        a.cli();
        Exit(a);
    }

    // Handlers do not return (this software KVM cannot emulate a protected-mode IRET): each notes its bit, EOIs,
    // acks the edu and goes on to the next stage, or exits.
    private static void Handler(Assembler a, int bit, uint ackThenGoTo)
    {
        a.or(esi, bit);
        a.mov(__dword_ptr[LocalApic + 0xb0], 0);
        a.mov(__dword_ptr[edi + 0x64], 1);
        if (ackThenGoTo == 0)
        {
            Exit(a);
            return;
        }
        a.mov(esp, Stack);
        a.mov(eax, ackThenGoTo);
        a.jmp(eax);
    }
}

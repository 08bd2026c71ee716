using Iced.Intel;
using KvmActors.Runtime.Boot;
using KvmActors.Runtime.Boot.Acpi;
using KvmActors.Tests.Boot;
using KvmActors.Tests.Support;
using static Iced.Intel.AssemblerRegisters;

namespace KvmActors.Tests.Qemu;

/// <summary>A Multiboot kernel (Iced) that sleeps in ACPI S3 and is woken by the RTC alarm, as kvm-unit-tests' s3 test.</summary>
public static class S3Guests
{
    private const uint Load = 0x100000, Entry = Load + 32, StubOffset = 0x200, Vector = 0x7000, Marker = 0x500;

    /// <summary>
    /// Sets the FACS firmware waking vector to a real-mode stub copied to 0x7000, PM1_EN.RTC_EN, an RTC alarm for
    /// every second (don't-care values) with AIE, then enters S3 (PM1 control: SLP_TYP 1 | SLP_EN) with a marker at
    /// 0x500 that is 0 before the write and set to 1 by every instruction after it. The stub, in real mode, exits through
    /// debug-exit (0xf4) with v = (PM1_STS &gt;&gt; 10) | (marker &lt;&lt; 1): <see cref="ResumedExit"/> (0x21: RTC_STS and
    /// WAK_STS set, marker 0) when the vCPU stopped at the write and woke at the vector; 0x23 if it ran on after it.
    /// </summary>
    public static byte[] SleepAndWakeByRtcAlarm()
    {
        var header = TestImages.MultibootHeader(Multiboot.FlagMemoryInfo | Multiboot.FlagAddressFields, addresses: (Load, Load, 0, 0, Entry));
        var stub = Guests.Assemble(16, 0, a =>
        {
            a.mov(dx, 0x600);
            a.@in(ax, dx);
            a.shr(ax, 10);
            a.mov(bx, __word_ptr[Marker]);
            a.shl(bx, 1);
            a.or(ax, bx);
            a.@out(0xf4, al);
            var spin = a.CreateLabel();
            a.Label(ref spin);
            a.hlt();
            a.jmp(spin);
        });
        var main = Guests.Assemble(32, Entry, a =>
        {
            a.mov(__dword_ptr[Marker], 0);
            a.mov(esi, Load + StubOffset);
            a.mov(edi, Vector);
            a.mov(ecx, (uint)stub.Length);
            a.rep.movsb();
            a.mov(__dword_ptr[(uint)AcpiLayout.Facs + 12], Vector);
            a.mov(dx, 0x602);                 // PM1_EN: RTC_EN
            a.mov(ax, 0x400);
            a.@out(dx, ax);
            foreach (var alarm in new byte[] { 1, 3, 5 })
            {
                a.mov(al, alarm);
                a.@out(0x70, al);
                a.mov(al, 0xc0);
                a.@out(0x71, al);
            }
            a.mov(al, 0x0b);                  // register B: 24-hour, AIE
            a.@out(0x70, al);
            a.mov(al, 0x22);
            a.@out(0x71, al);
            a.mov(dx, 0x604);                 // PM1 control: S3
            a.mov(ax, 0x2400);
            a.@out(dx, ax);
            var spin = a.CreateLabel();
            a.Label(ref spin);
            a.mov(__dword_ptr[Marker], 1);
            a.jmp(spin);
        });
        var codeEnd = header.Length + main.Length;
        if (codeEnd > StubOffset) throw new InvalidOperationException("the main code overlaps the stub");
        return [.. header, .. main, .. new byte[StubOffset - codeEnd], .. stub];
    }

    public const byte ResumedExit = 0x21;
}

using Iced.Intel;
using KvmActors.Runtime.Config;
using static Iced.Intel.AssemblerRegisters;

namespace KvmActors.Host.Bench;

/// <summary>The two exit-path workloads of <c>kvmactors bench</c>.</summary>
public enum Workload
{
    /// <summary>The guest writes N bytes to COM1's data port (0x3f8): N OUT exits per vCPU.</summary>
    Out,
    /// <summary>The guest reads COM1's line status (0x3fd), then writes a byte to 0x3f8, N times: 2N exits per vCPU.</summary>
    InOut,
}

/// <summary>
/// The benchmark guests, assembled with Iced at run time: 16-bit real mode at 0x1000, N in ECX.
/// Every vCPU runs the same code: it counts itself in at 0x3000 and spins until all vCPUs have (so
/// they start together whatever the start-up skew of their threads), writes the start marker to
/// <see cref="MarkerPort"/>, runs the workload loop, writes the end marker and halts.
/// </summary>
public static class BenchGuests
{
    public const ushort MarkerPort = 0x4ee;
    public const ushort ComData = 0x3f8;
    public const ushort ComLsr = 0x3fd;
    public const ulong Origin = 0x1000;
    private const ushort Arrivals = 0x3000;

    public static string Name(this Workload w) => w == Workload.Out ? "out" : "inout";

    /// <summary>Exits to COM1 per vCPU per iteration (markers and HLT excluded).</summary>
    public static int ExitsPerIteration(this Workload w) => w == Workload.Out ? 1 : 2;

    public static byte[] Image(Workload workload, int vcpus) => Assemble(a =>
    {
        var wait = a.CreateLabel();
        var loop = a.CreateLabel();
        a.@lock.inc(__word_ptr[Arrivals]);
        a.Label(ref wait);
        a.cmp(__word_ptr[Arrivals], (ushort)vcpus);
        a.jb(wait);
        a.mov(dx, MarkerPort);
        a.mov(al, 0);
        a.@out(dx, al);                      // start marker

        if (workload == Workload.Out)
        {
            // mov dx,0x3f8 ; mov al,'x' ; 1: out dx,al ; dec ecx ; jnz 1b
            a.mov(dx, ComData);
            a.mov(al, (byte)'x');
            a.Label(ref loop);
            a.@out(dx, al);
            a.dec(ecx);
            a.jnz(loop);
        }
        else
        {
            // 1: mov dx,0x3fd ; in al,dx ; mov dx,0x3f8 ; out dx,al ; dec ecx ; jnz 1b  (writes the LSR value read)
            a.Label(ref loop);
            a.mov(dx, ComLsr);
            a.@in(al, dx);
            a.mov(dx, ComData);
            a.@out(dx, al);
            a.dec(ecx);
            a.jnz(loop);
        }

        a.mov(dx, MarkerPort);
        a.mov(al, 1);
        a.@out(dx, al);                      // end marker
        a.hlt();
    });

    private static byte[] Assemble(Action<Assembler> body)
    {
        var a = new Assembler(16);
        body(a);
        using var ms = new MemoryStream();
        a.Assemble(new StreamCodeWriter(ms), Origin);
        return ms.ToArray();
    }

    /// <summary>
    /// The guest as a spec, the same for both variants: COM1 is the real uart-16550 with sink null, and
    /// the marker port goes to <see cref="BenchClockDevice"/> (which the inline loop handles itself).
    /// </summary>
    public static GuestSpec Spec(Workload workload, int vcpus, long iterations, string runId)
    {
        var image = Image(workload, vcpus);
        var hex = string.Join(" ", image.Select(b => b.ToString("x2")));
        var clockType = typeof(BenchClockDevice).AssemblyQualifiedName;
        var hocon = $$"""
            guest {
              name = "bench-{{workload.Name()}}-{{vcpus}}"
              vcpus = {{vcpus}}
              image {
                inline = "{{hex}}"
                load-address = 0x{{Origin:x}}
              }
              cpu.registers {
                rip = 0x{{Origin:x}}
                rcx = {{iterations}}
              }
              devices {
                com1.options.sink = null
                bench-clock {
                  type = "{{clockType}}"
                  ports = ["0x{{MarkerPort:x}}"]
                  options.run = "{{runId}}"
                }
              }
              halt-policy = all-halted
              unmapped-io = strict
            }
            """;
        return GuestConfigLoader.FromText(hocon, "<bench>", Environment.CurrentDirectory);
    }
}

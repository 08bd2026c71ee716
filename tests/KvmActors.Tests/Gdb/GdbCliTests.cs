using System.Diagnostics;
using KvmActors.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace KvmActors.Tests.Gdb;

/// <summary>
/// The README's gdb session, for real: `kvmactors run GUEST --gdb unix:PATH --gdb-wait` as a process, and gdb with
/// the guest's ELF (its symbols) attached to it. The ELF is a long-mode program assembled with binutils here.
/// </summary>
public sealed class GdbCliTests(ITestOutputHelper output)
{
    private const string Program = """
        .code64
        .globl _start
        .text
        _start:
            mov $0x3f8, %dx
            lea msg(%rip), %rsi
        next:
            movb (%rsi), %al
            test %al, %al
            jz done
            out %al, %dx
            inc %rsi
            jmp next
        done:
            hlt
        .data
        .globl msg
        msg: .asciz "hi\n"
        """;

    private static void Tool(string dir, string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file, args) { WorkingDirectory = dir, RedirectStandardError = true, RedirectStandardOutput = true, RedirectStandardInput = true };
        var r = Kvmactors.RunProcess(psi, TimeSpan.FromSeconds(60));
        Assert.True(r.ExitCode == 0, $"{file} {string.Join(' ', args)}: {r.Stderr}");
    }

    [GdbFact]
    public void Gdb_with_the_elf_breaks_on_a_symbol_steps_reads_memory_and_continues_to_the_guests_normal_end()
    {
        var dir = Directory.CreateTempSubdirectory("kvmactors-gdb-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "g.s"), Program);
            Tool(dir, "as", "--64", "-o", "g.o", "g.s");
            Tool(dir, "ld", "-m", "elf_x86_64", "-nostdlib", "-Ttext=0x100000", "-Tdata=0x101000", "-e", "_start", "-o", "g.elf", "g.o");
            File.WriteAllText(Path.Combine(dir, "g.conf"), """
                guest {
                  name = gdb-elf
                  memory = [
                    { address = 0, size = 2M }
                  ]
                  image {
                    file = "g.elf"
                    format = elf
                  }
                }
                """);
            var socket = Path.Combine(dir, "gdb.sock");
            using var vm = new Kvmactors.Running("run", Path.Combine(dir, "g.conf"), "--gdb", $"unix:{socket}", "--gdb-wait", "--timeout", "60s");
            Assert.True(vm.WaitUntil(_ => File.Exists(socket), TimeSpan.FromSeconds(30)), $"no gdb socket; stderr: {vm.Stderr}");
            Assert.Equal("", vm.Stdout); // --gdb-wait: nothing runs before gdb says so

            var gdb = new ProcessStartInfo(GdbAvailability.Path) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
            foreach (var a in new[] { "-batch", "-nx", Path.Combine(dir, "g.elf"), "-ex", $"target remote {socket}", "-ex", "break done", "-ex", "continue",
                         "-ex", "info registers rip", "-ex", "x/s &msg", "-ex", "stepi", "-ex", "info threads", "-ex", "continue" })
                gdb.ArgumentList.Add(a);
            var g = Kvmactors.RunProcess(gdb, TimeSpan.FromSeconds(60));
            output.WriteLine(g.Stdout + g.Stderr);
            var ended = vm.WaitForExit(TimeSpan.FromSeconds(30));

            Assert.Contains("Breakpoint 1, 0x0000000000100017 in done ()", g.Stdout);
            Assert.Contains("rip            0x100017            0x100017 <done>", g.Stdout);
            Assert.Contains("0x101000:\t\"hi\\n\"", g.Stdout);
            Assert.Contains("0x0000000000100018 in ?? ()", g.Stdout); // stepi: one instruction (hlt)
            Assert.Contains("Thread 1 (vCPU 0, long mode)", g.Stdout);
            Assert.Contains("exited normally", g.Stdout);
            Assert.DoesNotContain("too long", g.Stdout + g.Stderr);
            Assert.Equal(0, ended.ExitCode);
            Assert.Equal("hi\n", ended.Stdout);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [KvmFact]
    public void A_non_loopback_gdb_address_is_refused_without_allow_remote()
    {
        var r = Kvmactors.Run(TimeSpan.FromSeconds(60), "run", "--gdb", "tcp:0.0.0.0:1234");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("guest.gdb.listen", r.Stderr);
        Assert.Contains("not a loopback address", r.Stderr);
        Assert.Equal("", r.Stdout);
    }
}

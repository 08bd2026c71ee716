using System.Diagnostics;
using System.IO.Pipes;
using System.Runtime.InteropServices;
using Iced.Intel;
using KvmActors.Tests.Support;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace KvmActors.Tests.Sdk;

/// <summary>
/// stdout is a pipe nobody reads and the guest keeps printing, polling LSR.THRE as serial drivers do: the
/// host's stdout writer thread blocks in write(2), never a vCPU thread (the guest waits in guest code, where
/// a kick reaches it), and --timeout still ends the run on time.
/// </summary>
public sealed class StdoutBackPressureTests
{
    // loop: wait for LSR.THRE; write 'x' to THR; jmp loop
    private static readonly byte[] Flood = Guests.Assemble(16, 0x1000, a =>
    {
        var loop = a.CreateLabel();
        a.Label(ref loop);
        a.mov(al, (byte)'x');
        Guests.EmitPutcAl(a);
        a.jmp(loop);
    });

    private static IEnumerable<(string Comm, string Syscall)> Threads(int pid) =>
        Directory.GetDirectories($"/proc/{pid}/task").Select(t =>
        {
            try { return (File.ReadAllText(Path.Combine(t, "comm")).Trim(), File.ReadAllText(Path.Combine(t, "syscall")).Trim()); }
            catch (IOException) { return ("?", "?"); } // ended while we looked
        });

    private const int F_SETPIPE_SZ = 1031;
    [DllImport("libc", SetLastError = true)] private static extern int fcntl(SafeHandle fd, int cmd, int arg);

    private static bool InWrite(string syscall) => syscall.StartsWith("1 "); // x86-64 write(2)

    [KvmFact]
    public void A_stdout_nobody_reads_blocks_only_the_writer_thread_and_the_timeout_still_ends_the_run()
    {
        const int timeoutSeconds = 8;
        using var p = Process.Start(Kvmactors.StartInfo("run", "hocon/guests/debug-exit.conf",
            "--set", $"guest.image.inline=\"{Guests.Hex(Flood)}\"",
            "--set", "guest.cpu.registers.rsp=0x8000",
            "--set", "kvmactors.host-io.buffer-size=4096",
            "--timeout", $"{timeoutSeconds}s"))!;
        var started = Stopwatch.StartNew();
        // A small pipe and buffer, so this slow KVM's guest fills them in well under the timeout. The child is
        // still starting (a second or more), so the pipe is empty when it shrinks.
        var pipe = Assert.IsAssignableFrom<PipeStream>(p.StandardOutput.BaseStream);
        Assert.True(fcntl(pipe.SafePipeHandle, F_SETPIPE_SZ, 4096) >= 0, $"F_SETPIPE_SZ: errno {Marshal.GetLastPInvokeError()}");
        var stderr = p.StandardError.ReadToEndAsync(); // stdout is never read
        try
        {
            // The pipe and the sink's buffer fill; then the writer thread sits in write(2).
            List<(string Comm, string Syscall)> threads = [];
            while (started.Elapsed < TimeSpan.FromSeconds(timeoutSeconds - 1))
            {
                threads = Threads(p.Id).ToList();
                if (threads.Any(t => t.Comm == "out-stdout" && InWrite(t.Syscall))) break;
                Thread.Sleep(50);
            }
            Assert.Contains(threads, t => t.Comm == "out-stdout" && InWrite(t.Syscall));
            // The guest is stuck behind a full sink; its vCPU threads are not in write(2) (they run the guest).
            for (int i = 0; i < 10; i++)
            {
                Assert.DoesNotContain(Threads(p.Id), t => t.Comm.Contains("vcpu") && InWrite(t.Syscall));
                Thread.Sleep(20);
            }
            Assert.False(p.HasExited);

            Assert.True(p.WaitForExit(TimeSpan.FromSeconds(timeoutSeconds + 10)), "kvmactors did not end");
            Assert.Equal(124, p.ExitCode);
            Assert.True(started.Elapsed < TimeSpan.FromSeconds(timeoutSeconds + 2), $"ended {started.Elapsed} after start (timeout {timeoutSeconds} s)");
            Assert.Contains("timeout", stderr.Result);
        }
        finally
        {
            if (!p.HasExited) p.Kill(entireProcessTree: true);
        }
    }
}

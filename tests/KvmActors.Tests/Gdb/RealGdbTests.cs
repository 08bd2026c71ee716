using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using KvmActors.Gdb;
using Xunit;
using Xunit.Abstractions;

namespace KvmActors.Tests.Gdb;

/// <summary>
/// The installed gdb against <see cref="GdbSession"/> over TCP, with a <see cref="FakeGdbTarget"/>:
/// proves gdb accepts our target descriptions (no "set architecture"; the XML alone must select
/// it), that our g layout has the size gdb derives from them, and that reads, writes, steps,
/// breakpoints, thread listing and detach work end to end with the real client.
/// </summary>
public sealed class RealGdbTests(ITestOutputHelper output)
{
    private static readonly string[] Forbidden =
    [
        "too long", "Architecture rejected", "Truncated register", "Remote failure reply",
        "Could not load XML", "OS ABI", "Remote replied unexpectedly", "Ignoring packet error",
    ];

    public static TheoryData<X86Mode, string, string> Modes => new()
    {
        { X86Mode.Long64, "i386:x86-64", "rip" },
        { X86Mode.Protected32, "i386", "eip" },
        { X86Mode.Real16, "i8086", "eip" },
    };

    [GdbTheory]
    [MemberData(nameof(Modes))]
    public async Task Gdb_accepts_the_description_and_debugs_the_fake_target(X86Mode mode, string arch, string pc)
    {
        var target = new FakeGdbTarget();
        target.Registers[1] = target.Registers[1] with
        {
            Rax = 0x11223344, Rbx = 0x55, Rsp = 0x7000, Rflags = 0x246, Cs = 0x8, Ss = 0x10, FsBase = 0x5000,
            Cr0 = 0x80000011, Cr3 = 0x9000, Efer = 0x500,
        };
        new byte[] { 0x31, 0xc0, 0x40, 0x90 }.CopyTo(target.Memory, 0x1000);

        var (text, _) = await RunGdbAsync(target, mode,
            "show architecture",
            $"info registers {pc}",
            "info registers eflags",
            "info registers cs",
            "info registers fs_base",
            "info registers cr0",
            "info registers cr3",
            "info registers efer",
            "x/4xb 0x1000",
            "stepi",
            $"info registers {pc}",
            "set $eax = 0x1234",
            "set {unsigned char}0x2000 = 0x42",
            "break *0x1010",
            "continue",
            $"info registers {pc}",
            "info threads",
            "detach");

        foreach (var bad in Forbidden) Assert.DoesNotContain(bad, text);
        Assert.Contains($"(currently \"{arch}\")", text);
        Assert.Matches($@"\n{pc}\s+0x1000\s", text);
        Assert.Matches(@"\neflags\s+0x246\s+\[ PF ZF IF \]", text);
        Assert.Matches(@"\ncs\s+0x8\s", text);
        Assert.Matches(@"\nfs_base\s+0x5000\s", text);
        Assert.Matches(@"\ncr0\s+0x80000011\s+2147483665", text);
        Assert.Matches(@"\ncr3\s+0x9000\s", text);
        Assert.Matches(@"\nefer\s+0x500\s", text);
        Assert.Matches(@"0x1000:\s+0x31\s+0xc0\s+0x40\s+0x90", text);
        Assert.Matches($@"\n{pc}\s+0x1001\s", text);
        Assert.Matches(@"Breakpoint 1, 0x0*1010 in", text);
        Assert.Matches($@"\n{pc}\s+0x1010\s", text);
        Assert.Matches(@"Thread 2 \(vCPU 1\)", text);
        Assert.Contains("[Inferior 1 (Remote target) detached]", text);

        // What gdb did, seen from the target.
        Assert.Equal(0x1234UL, target.Registers[1].Rax & 0xffff_ffff);
        Assert.Equal(0x42, target.Memory[0x2000]);
        Assert.Contains("insert Software 1010 1", target.Calls);
        Assert.Contains("remove Software 1010 1", target.Calls);
        Assert.True(target.Detached);
        Assert.Empty(target.Breakpoints);
    }

    /// <summary>A user's Ctrl-C: SIGINT to gdb during "continue" makes gdb send 0x03; the stop is reported as SIGINT.</summary>
    [GdbFact]
    public async Task Ctrl_C_in_gdb_interrupts_the_running_target_and_gdb_sees_SIGINT()
    {
        var target = new FakeGdbTarget();
        var (text, _) = await RunGdbAsync(target, X86Mode.Long64, async gdb =>
        {
            await target.RunningForever.Task.WaitAsync(TimeSpan.FromSeconds(20));
            Assert.Equal(0, Kill(gdb.Id, SigInt));
        }, "continue", "info threads", "detach");
        foreach (var bad in Forbidden) Assert.DoesNotContain(bad, text);
        Assert.Equal(1, target.Interrupts);
        // The fake reports the interrupt on its last thread, and gdb switches to it.
        Assert.Contains("Thread 2 received signal SIGINT", text);
        Assert.Matches(@"\* 2\s+Thread 2 \(vCPU 1\)", text);
        Assert.True(target.Detached);
    }

    private const int SigInt = 2;

    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int signal);

    private Task<(string Text, int ExitCode)> RunGdbAsync(FakeGdbTarget target, X86Mode mode, params string[] commands) =>
        RunGdbAsync(target, mode, null, commands);

    private async Task<(string Text, int ExitCode)> RunGdbAsync(
        FakeGdbTarget target, X86Mode mode, Func<Process, Task>? whileRunning, params string[] commands)
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var server = Task.Run(async () =>
        {
            using var client = await listener.AcceptTcpClientAsync(cts.Token);
            client.NoDelay = true;
            await using var stream = client.GetStream();
            await new GdbSession(stream, target, new GdbSessionOptions(mode)).RunAsync(cts.Token);
        });

        var psi = new ProcessStartInfo(GdbAvailability.Path)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
        };
        foreach (var a in new[] { "-batch", "-nx", "-ex", "set pagination off", "-ex", "set confirm off", "-ex", $"target remote 127.0.0.1:{port}" })
            psi.ArgumentList.Add(a);
        foreach (var c in commands)
        {
            psi.ArgumentList.Add("-ex");
            psi.ArgumentList.Add(c);
        }
        using var gdb = Process.Start(psi)!;
        var stdout = gdb.StandardOutput.ReadToEndAsync(cts.Token);
        var stderr = gdb.StandardError.ReadToEndAsync(cts.Token);
        try
        {
            if (whileRunning is not null) await whileRunning(gdb);
            await gdb.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            gdb.Kill();
            throw;
        }
        var text = "\n" + await stdout + "\n" + await stderr;
        output.WriteLine(text);
        await server.WaitAsync(cts.Token);
        return (text, gdb.ExitCode);
    }
}

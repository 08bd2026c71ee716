using System.Diagnostics;
using System.Net;
using Akka.Actor;
using Akka.TestKit;
using KvmActors.Tests.Support;
using KvmActors.Runtime.Config;
using KvmActors.Runtime.Debug;
using KvmActors.Runtime.Vm;
using Xunit;
using Xunit.Abstractions;

namespace KvmActors.Tests.Gdb;

/// <summary>The real gdb against the gdb stub of a real VM on KVM (the VM actor's DebuggerActor).</summary>
public sealed class GdbStubKvmTests : KvmTestKit
{
    private readonly ITestOutputHelper _output;

    public GdbStubKvmTests(ITestOutputHelper output) : base(output) => _output = output;

    // Real mode at 0x1000: print 'A', then the byte at 0x2000 ('B' in memory), store 'Z' at 0x2001, print '\n', hlt.
    private static readonly byte[] Program = WithDataAt0x2000(Convert.FromHexString(
        "b041" +        // 1000 mov al, 'A'
        "baf803" +      // 1002 mov dx, 0x3f8
        "ee" +          // 1005 out dx, al
        "a00020" +      // 1006 mov al, [0x2000]
        "ee" +          // 1009 out dx, al
        "c60601205a" +  // 100a mov byte [0x2001], 'Z'
        "b00a" +        // 100f mov al, '\n'
        "ee" +          // 1011 out dx, al
        "f4"));         // 1012 hlt

    /// <summary>The image runs from 0x1000; 'B' goes at 0x2000, the byte the program prints second.</summary>
    private static byte[] WithDataAt0x2000(byte[] code)
    {
        var image = new byte[0x1001];
        code.CopyTo(image, 0);
        image[0x1000] = (byte)'B';
        return image;
    }

    private GuestSpec DebuggedGuest(string sink, byte[]? program = null, int vcpus = 1, string extra = "")
    {
        var hocon = RealModeGuest(program ?? Program, sink, $"vcpus = {vcpus}\n{extra}");
        return Guest(hocon) with { Gdb = new GdbSpec("tcp:127.0.0.1:0", Wait: true) };
    }

    /// <summary>Starts the VM (waiting for gdb), writes 'B' at 0x2000, and returns the port its stub listens on.</summary>
    private (IActorRef Vm, TestProbe Owner, int Port) StartDebugged(GuestSpec spec)
    {
        var listening = CreateTestProbe();
        Sys.EventStream.Subscribe(listening.Ref, typeof(DebuggerListening));
        var (vm, owner) = Start(spec);
        var port = ((IPEndPoint)listening.ExpectMsg<DebuggerListening>(TimeSpan.FromSeconds(10)).EndPoint).Port;
        return (vm, owner, port);
    }

    /// <summary>Runs gdb in batch mode against the stub; <paramref name="whileRunning"/> sees gdb and its output so far.</summary>
    private async Task<string> Gdb(int port, Func<Process, Func<string>, Task>? whileRunning, params string[] commands)
    {
        var psi = new ProcessStartInfo(GdbAvailability.Path) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        foreach (var a in new[] { "-batch", "-nx", "-ex", "set pagination off", "-ex", "set confirm off", "-ex", $"target remote 127.0.0.1:{port}" })
            psi.ArgumentList.Add(a);
        foreach (var c in commands) { psi.ArgumentList.Add("-ex"); psi.ArgumentList.Add(c); }
        var text = new System.Text.StringBuilder();
        string Text() { lock (text) return text.ToString(); }
        using var gdb = new Process { StartInfo = psi };
        gdb.OutputDataReceived += (_, e) => { if (e.Data is { } l) lock (text) text.AppendLine(l); };
        gdb.ErrorDataReceived += (_, e) => { if (e.Data is { } l) lock (text) text.AppendLine(l); };
        gdb.Start();
        gdb.BeginOutputReadLine();
        gdb.BeginErrorReadLine();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(40));
        try
        {
            if (whileRunning is not null) await whileRunning(gdb, Text);
            await gdb.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException) { gdb.Kill(); throw; }
        _output.WriteLine(Text());
        return Text();
    }

    [GdbFact]
    public async Task Hardware_breakpoint_stepi_registers_and_memory_on_a_real_mode_guest()
    {
        var sink = SinkName();
        var (_, owner, port) = StartDebugged(DebuggedGuest(sink));
        var text = await Gdb(port, null,
            "hbreak *0x1006",
            "continue",
            "printf \"PC=%x\\n\", $pc",
            "printf \"MEM=%x\\n\", *(unsigned char*)0x2000",
            "stepi",
            "printf \"STEP=%x AL=%x\\n\", $pc, $eax & 0xff",
            "set var *(unsigned char*)0x2000 = 0x58",
            "set var $eax = 0x43",
            "delete",
            "continue");
        var ended = owner.ExpectMsg<VmEnded>(TimeSpan.FromSeconds(20));
        Assert.Contains("PC=1006", text);
        Assert.Contains("MEM=42", text);
        Assert.Contains("STEP=1009 AL=42", text);          // exactly one instruction: mov al, [0x2000]
        Assert.Equal(VmEndReason.Halted, ended.Reason);
        Assert.Equal("AC\n", SinkText(sink));                 // $eax written before the OUT; memory written too
        Assert.DoesNotContain("too long", text);
    }

    [GdbFact]
    public async Task Memory_written_by_gdb_changes_what_the_guest_prints()
    {
        var sink = SinkName();
        var (_, owner, port) = StartDebugged(DebuggedGuest(sink));
        await Gdb(port, null, "set var *(unsigned char*)0x2000 = 0x58", "continue");
        owner.ExpectMsg<VmEnded>(TimeSpan.FromSeconds(20));
        Assert.Equal("AX\n", SinkText(sink));
    }

    [GdbFact]
    public async Task Watchpoint_stops_on_the_guests_write()
    {
        var sink = SinkName();
        var (_, owner, port) = StartDebugged(DebuggedGuest(sink));
        var text = await Gdb(port, null, "watch *(unsigned char*)0x2001", "continue", "printf \"PC=%x\\n\", $pc", "delete", "continue");
        owner.ExpectMsg<VmEnded>(TimeSpan.FromSeconds(20));
        Assert.Contains("atchpoint 1: *(unsigned char*)0x2001", text);
        Assert.Contains("New value = 90 'Z'", text);
        Assert.Contains("PC=100f", text); // a data breakpoint traps after the writing instruction
        Assert.Equal("AB\n", SinkText(sink));
    }

    [GdbFact]
    public async Task Detach_lets_the_guest_finish_with_its_normal_output()
    {
        var sink = SinkName();
        var (_, owner, port) = StartDebugged(DebuggedGuest(sink));
        await Gdb(port, null, "hbreak *0x1009", "continue", "detach");
        var ended = owner.ExpectMsg<VmEnded>(TimeSpan.FromSeconds(20));
        Assert.Equal(VmEndReason.Halted, ended.Reason);
        Assert.Equal("AB\n", SinkText(sink));
    }

    [GdbFact]
    public async Task Kill_ends_the_vm_as_stopped_on_request()
    {
        var sink = SinkName();
        var (_, owner, port) = StartDebugged(DebuggedGuest(sink));
        await Gdb(port, null, "kill");
        var ended = owner.ExpectMsg<VmEnded>(TimeSpan.FromSeconds(20));
        Assert.Equal(VmEndReason.StoppedOnRequest, ended.Reason);
        Assert.Equal("", SinkText(sink)); // --gdb-wait: the guest never ran
    }

    [GdbFact]
    public async Task Ctrl_c_interrupts_a_spinning_guest()
    {
        var sink = SinkName();
        var (_, owner, port) = StartDebugged(DebuggedGuest(sink, Guests.Spin));
        var text = await Gdb(port, async (gdb, soFar) =>
        {
            // Once gdb has resumed the spinning guest, Ctrl-C it as a user would.
            for (var i = 0; i < 200 && !soFar().Contains("Continuing."); i++) await Task.Delay(50);
            await Task.Delay(300);
            Process.Start("kill", $"-INT {gdb.Id}")!.WaitForExit();
        }, "continue", "printf \"PC=%x\\n\", $pc", "kill");
        owner.ExpectMsg<VmEnded>(TimeSpan.FromSeconds(20));
        Assert.Contains("received signal SIGINT", text);
        Assert.Contains("PC=1000", text);
    }

    [GdbFact]
    public async Task Four_vcpus_are_four_threads_and_a_hit_on_vcpu_2_reports_thread_3()
    {
        var sink = SinkName();
        // Every vCPU halts at 0x1000, but vCPU 2 starts at 0x1100: nop; nop; hlt.
        var program = new byte[0x103];
        program[0] = 0xf4;
        program[0x100] = 0x90; program[0x101] = 0x90; program[0x102] = 0xf4;
        var spec = DebuggedGuest(sink, program, vcpus: 4, """vcpu-overrides { "2" { registers { rip = 0x1100 } } }""");
        var (_, owner, port) = StartDebugged(spec);
        var text = await Gdb(port, null, "info threads", "hbreak *0x1101", "continue", "printf \"PC=%x\\n\", $pc", "delete", "continue");
        var ended = owner.ExpectMsg<VmEnded>(TimeSpan.FromSeconds(20));
        Assert.Contains("Thread 4", text);
        Assert.Contains("Thread 3 hit Breakpoint 1, 0x00001101", text);
        Assert.Contains("PC=1101", text);
        Assert.Equal(VmEndReason.Halted, ended.Reason);
    }

    [GdbFact]
    public async Task Protected_mode_guest_gets_the_i386_description_breakpoint_step_and_memory()
    {
        var sink = SinkName();
        // Flat 32-bit protected mode at 0x8000 (0x1000 holds the GDT in this mode): print 'A', the byte at 0x9000
        // ('B'), then '\n'; hlt.
        var image = new byte[0x1001];
        Convert.FromHexString(
            "b041" +          // 8000 mov al, 'A'
            "66baf803" +      // 8002 mov dx, 0x3f8
            "ee" +            // 8006 out dx, al
            "a000900000" +    // 8007 mov al, [0x9000]
            "ee" +            // 800c out dx, al
            "b00a" +          // 800d mov al, '\n'
            "ee" +            // 800f out dx, al
            "f4").CopyTo(image, 0); // 8010 hlt
        image[0x1000] = (byte)'B';
        var hocon = $$"""
            guest {
              name = test
              memory = [
                { address = 0, size = 64K }
              ]
              image {
                inline = "{{Guests.Hex(image)}}"
                load-address = 0x8000
              }
              cpu.mode = protected
              cpu.registers.rip = 0x8000
              devices.com1.options.sink = "memory:{{sink}}"
            }
            """;
        var (_, owner, port) = StartDebugged(Guest(hocon) with { Gdb = new GdbSpec("tcp:127.0.0.1:0", Wait: true) });
        var text = await Gdb(port, null,
            "show architecture",
            "hbreak *0x8007",
            "continue",
            "printf \"PC=%x MEM=%x\\n\", $pc, *(unsigned char*)0x9000",
            "stepi",
            "printf \"STEP=%x AL=%x\\n\", $pc, $eax & 0xff",
            "delete",
            "continue");
        var ended = owner.ExpectMsg<VmEnded>(TimeSpan.FromSeconds(20));
        Assert.Contains("\"i386\"", text);
        Assert.Contains("PC=8007 MEM=42", text);
        Assert.Contains("STEP=800c AL=42", text);
        Assert.Equal(VmEndReason.Halted, ended.Reason);
        Assert.Equal("AB\n", SinkText(sink));
    }
}

using System.Diagnostics;
using System.Text.Json;
using KvmActors.Host;
using KvmActors.Runtime.Vm;
using KvmActors.Tests.Support;
using Xunit;

namespace KvmActors.Tests.Host;

/// <summary>Small real-mode guests at 0x1000 for the CLI's hardening tests, given with --set.</summary>
internal static class CliGuests
{
    public const string Rip = "guest.cpu.registers.rip=0x1000";
    /// <summary>mov dx,0x3f8; mov al,'A'; out dx,al; jmp $-3: floods COM1 with 'A' forever.</summary>
    public const string Flood = "guest.image.inline=\"ba f8 03 b0 41 ee eb fd\"";
    /// <summary>mov dx,0x3f8; mov al,'g'; out dx,al; jmp $: prints "g" (the test's cue), then spins without exits.</summary>
    public const string PrintThenSpin = "guest.image.inline=\"ba f8 03 b0 67 ee eb fe\"";
    /// <summary>mov dx,0x400; l: out dx,al; inc dx; or dx,0x400; jmp l: writes every unmapped port above 0x400, one warning each.</summary>
    public const string UnmappedPortFlood = "guest.image.inline=\"ba 00 04 ee 42 81 ca 00 04 eb f8\"";

    public static void NoStackTrace(Kvmactors.Result r) => Assert.DoesNotContain("   at ", r.Stderr);
}

/// <summary>SIGTERM, SIGHUP and SIGINT stop the VM like Ctrl-C; a second signal ends the process at once.</summary>
public sealed class CliSignalTests
{
    [KvmTheory]
    [InlineData(15, 143, "SIGTERM")]
    [InlineData(1, 129, "SIGHUP")]
    [InlineData(2, 130, "SIGINT")]
    public void A_signal_stops_the_vm_writes_the_report_and_exits_with_its_status(int signal, int status, string name)
    {
        var report = Path.Combine(Path.GetTempPath(), $"report-{Guid.NewGuid():N}.json");
        try
        {
            using var k = new Kvmactors.Running("run", "--set", CliGuests.PrintThenSpin, "--set", CliGuests.Rip, "--report", report);
            Assert.True(k.WaitUntil(r => r.Stdout == "g", TimeSpan.FromSeconds(30)), k.Stderr);
            k.Signal(signal);
            var r = k.WaitForExit(TimeSpan.FromSeconds(10));
            Assert.Equal(status, r.ExitCode);
            Assert.Equal("g", r.Stdout);
            Assert.Contains($"StoppedOnRequest: {(signal == 2 ? "interrupted" : signal == 1 ? "hung up" : "terminated")} ({name})", r.Stderr);
            CliGuests.NoStackTrace(r);
            using var doc = JsonDocument.Parse(File.ReadAllText(report));
            Assert.Equal(status, doc.RootElement.GetProperty("exitStatus").GetInt32());
            Assert.Equal("StoppedOnRequest", doc.RootElement.GetProperty("reason").GetString());
        }
        finally { File.Delete(report); }
    }

    [KvmFact]
    public void A_second_signal_ends_the_process_at_once_with_the_first_ones_status()
    {
        // After the first SIGTERM the run ends the VM and then writes --report: to a FIFO nobody reads, which it
        // waits for up to the (30 s) grace. The second SIGTERM, during that wait, ends the process at once.
        var dir = Directory.CreateTempSubdirectory("kvmactors-signal-").FullName;
        var fifo = Path.Combine(dir, "report.fifo");
        Fifo.Make(fifo);
        using var k = new Kvmactors.Running("run", "hocon/guests/spin.conf", "--report", fifo, "--set", "kvmactors.cli.stop-grace=30s");
        Assert.True(k.WaitUntil(r => r.HasKvmVm(), TimeSpan.FromSeconds(30)), k.Stderr);
        k.Signal(15);
        Thread.Sleep(300); // two signals sent at once would merge into one pending signal
        var second = Stopwatch.StartNew();
        k.Signal(15);
        var r = k.WaitForExit(TimeSpan.FromSeconds(20));
        Assert.Equal(143, r.ExitCode);
        Assert.True(second.Elapsed < TimeSpan.FromSeconds(3), $"took {second.Elapsed.TotalMilliseconds:0} ms after the second signal");
        Assert.Contains("terminated (SIGTERM) again: exiting at once with 143", r.Stderr);
        Assert.Equal("", r.Stdout);
        CliGuests.NoStackTrace(r);
        Directory.Delete(dir, recursive: true);
    }
}

/// <summary>stdout: a pipe nobody reads, a pipe closed by its reader, and log floods never reaching it.</summary>
public sealed class CliOutputTests
{
    [KvmFact]
    public void With_stdout_a_pipe_nobody_reads_timeout_ends_the_run_within_1s_of_its_deadline()
    {
        var psi = Kvmactors.StartInfo("run", "--set", CliGuests.Flood, "--set", CliGuests.Rip, "--timeout", "5s");
        var clock = Stopwatch.StartNew();
        using var p = Process.Start(psi)!;
        p.StandardInput.Close();
        var stderr = p.StandardError.ReadToEndAsync(); // stdout is never read until the end: the pipe fills
        Assert.True(p.WaitForExit(TimeSpan.FromSeconds(20)), "did not exit");
        var elapsed = clock.Elapsed;
        Assert.Equal(124, p.ExitCode);
        Assert.True(elapsed < TimeSpan.FromSeconds(6), $"took {elapsed.TotalMilliseconds:0} ms");
        var stdout = p.StandardOutput.ReadToEnd();
        Assert.True(stdout.All(c => c == 'A'), "stdout holds something other than the guest's bytes");
        Assert.DoesNotContain("   at ", stderr.Result);
    }

    [KvmFact]
    public void With_stdout_a_pipe_nobody_reads_sigterm_ends_the_run_within_1s()
    {
        var psi = Kvmactors.StartInfo("run", "--set", CliGuests.Flood, "--set", CliGuests.Rip);
        using var p = Process.Start(psi)!;
        p.StandardInput.Close();
        var stderr = p.StandardError.ReadToEndAsync();
        // Bounded poll for the pipe to be full: the guest's writes are blocked from then on.
        var started = Stopwatch.StartNew();
        while (started.Elapsed < TimeSpan.FromSeconds(30) && !PipeFull(p)) Thread.Sleep(50);
        var clock = Stopwatch.StartNew();
        Kvmactors.Kill(p.Id, 15);
        Assert.True(p.WaitForExit(TimeSpan.FromSeconds(20)), "did not exit");
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(1.5), $"took {clock.Elapsed.TotalMilliseconds:0} ms after SIGTERM");
        Assert.Equal(143, p.ExitCode);
        Assert.True(p.StandardOutput.ReadToEnd().All(c => c == 'A'));
        Assert.Contains("SIGTERM", stderr.Result);
        Assert.DoesNotContain("   at ", stderr.Result);
    }

    [KvmFact]
    public void Stdout_closed_by_its_reader_ends_a_flooding_guest_with_141()
    {
        var r = Kvmactors.Shell($"$KVMACTORS run --set '{CliGuests.Flood}' --set {CliGuests.Rip} --timeout 30s | head -c 100; exit ${{PIPESTATUS[0]}}");
        Assert.Equal(141, r.ExitCode);
        Assert.Equal(new string('A', 100), r.Stdout);
        Assert.Contains("stdout closed by its reader", r.Stderr);
        Assert.True(r.Elapsed < TimeSpan.FromSeconds(20), $"took {r.Elapsed.TotalMilliseconds:0} ms");
        CliGuests.NoStackTrace(r);
    }

    [KvmFact]
    public void No_log_line_reaches_stdout_when_the_guest_floods_the_log_until_shutdown()
    {
        var r = Kvmactors.Run("run", "--set", CliGuests.UnmappedPortFlood, "--set", CliGuests.Rip, "--timeout", "6s",
            "--set", "kvmactors.cli.stop-grace=10s"); // time for the VM to work through its mailbox and the logs to drain at shutdown
        Assert.Equal(124, r.ExitCode);
        Assert.Equal("", r.Stdout);
        Assert.True(r.Stderr.Contains("unmapped port"), r.Stderr[..Math.Min(2000, r.Stderr.Length)]);
        CliGuests.NoStackTrace(r);
    }

    [KvmTheory]
    [InlineData("fifo")]
    [InlineData("directory")]
    [InlineData("/dev/full")]
    [InlineData("missing folder")]
    public void A_report_that_cannot_be_written_keeps_the_guests_status_and_says_so_in_one_line(string target)
    {
        var dir = Directory.CreateTempSubdirectory("kvmactors-report-").FullName;
        try
        {
            var path = target switch
            {
                "fifo" => Path.Combine(dir, "fifo"),
                "directory" => dir,
                "missing folder" => Path.Combine(dir, "no", "such", "report.json"),
                _ => target,
            };
            if (target == "fifo") Process.Start("mkfifo", [path])!.WaitForExit();
            var r = Kvmactors.Run(TimeSpan.FromSeconds(30), "run", "--report", path);
            Assert.Equal(0, r.ExitCode);
            Assert.Equal("4\n", r.Stdout);
            Assert.Single(r.Stderr.Split('\n'), l => l.StartsWith($"kvmactors: report not written: {path}: "));
            CliGuests.NoStackTrace(r);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    private static bool PipeFull(Process p)
    {
        // FIONREAD on our end of the pipe: the default pipe buffer is 64 KiB.
        return PendingBytes(p) >= 65536;
    }

    private static int PendingBytes(Process p)
    {
        var fd = p.StandardOutput.BaseStream switch
        {
            FileStream f => f.SafeFileHandle.DangerousGetHandle(),
            System.IO.Pipes.PipeStream pipe => pipe.SafePipeHandle.DangerousGetHandle(),
            _ => -1,
        };
        var n = 0;
        return ioctl((int)fd, 0x541B, ref n) == 0 ? n : 0;
    }

    [System.Runtime.InteropServices.DllImport("libc")]
    private static extern int ioctl(int fd, ulong request, ref int value);
}

/// <summary>Command-line values the program cannot use: exit 2 naming the option, nothing on stdout.</summary>
public sealed class CliUsageTests
{
    [Theory]
    [InlineData("1e308")]
    [InlineData("Infinity")]
    [InlineData("NaN")]
    [InlineData("99999999999h")]
    [InlineData("-1s")]
    [InlineData("soon")]
    public void A_timeout_that_is_not_a_usable_duration_is_a_usage_error_naming_the_option(string value)
    {
        var r = Kvmactors.Run("run", "--timeout", value);
        Assert.Equal(2, r.ExitCode);
        Assert.Equal("", r.Stdout);
        Assert.Contains("--timeout", r.Stderr);
        CliGuests.NoStackTrace(r);
    }

    [Fact]
    public void A_mistyped_option_or_command_is_a_usage_error_with_a_suggestion()
    {
        var option = Kvmactors.Run("run", "--timout", "1s");
        Assert.Equal(2, option.ExitCode);
        Assert.Contains("did you mean --timeout?", option.Stderr);
        var command = Kvmactors.Run("rnu");
        Assert.Equal(2, command.ExitCode);
        Assert.Contains("'rnu' was not matched. Did you mean one of the following?", command.Stderr);
        Assert.Equal("", option.Stdout + command.Stdout);
    }

    [Fact]
    public void No_command_prints_the_usage_on_stderr_and_exits_2_while_help_asked_for_goes_to_stdout()
    {
        var none = Kvmactors.Run();
        Assert.Equal(2, none.ExitCode);
        Assert.Equal("", none.Stdout);
        Assert.Contains("run", none.Stderr);
        var help = Kvmactors.Run("run", "--help");
        Assert.Equal(0, help.ExitCode);
        Assert.Contains("--timeout", help.Stdout);
        Assert.Contains("--report", help.Stdout);
    }

    [Fact]
    public void A_bench_option_out_of_range_is_a_usage_error_naming_it()
    {
        var r = Kvmactors.Run("bench", "--rounds", "0");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("--rounds: '0' is not a number in 1..1000", r.Stderr);
    }
}

/// <summary>Near the open-files limit: exit 1 with a line naming RLIMIT_NOFILE, never an abort or a hang.</summary>
public sealed class CliFdLimitTests
{
    [Theory]
    [InlineData(24)]
    [InlineData(32)]
    [InlineData(64)]
    [InlineData(100)]
    public void Below_what_the_program_needs_it_exits_1_naming_the_limit(int limit)
    {
        var r = Kvmactors.Shell($"ulimit -n {limit}; exec $KVMACTORS run");
        Assert.Equal(1, r.ExitCode);
        Assert.Equal("", r.Stdout);
        Assert.Contains($"the open-files limit (RLIMIT_NOFILE) is {limit}", r.Stderr);
        CliGuests.NoStackTrace(r);
    }

    [KvmFact]
    public void Running_out_of_fds_while_creating_vcpus_exits_1_naming_the_limit()
    {
        var r = Kvmactors.Shell("ulimit -n 200; exec $KVMACTORS run hocon/guests/spin.conf --set guest.vcpus=180 --timeout 30s");
        Assert.Equal(1, r.ExitCode);
        Assert.Equal("", r.Stdout);
        Assert.Contains("EMFILE", r.Stderr);
        Assert.Contains("RLIMIT_NOFILE, is 200", r.Stderr);
        CliGuests.NoStackTrace(r);
    }
}

/// <summary>
/// The precedence of end statuses: a CLI stop decides only if the VM ended because of it. (A process test cannot
/// order a guest failure and a timeout deterministically, so the rule is tested where it is decided.)
/// </summary>
public sealed class EndStatusPrecedenceTests
{
    private static VmEnded Ended(VmEndReason reason, int status = 0) => new("t", reason, "d", status, null, []);
    private static readonly StopRequest Timeout = new(ExitCodes.Timeout, "timeout");

    [Fact]
    public void A_guest_failure_before_the_timeout_keeps_status_1() =>
        Assert.Equal(1, RunCommand.StatusOf(Ended(VmEndReason.GuestFailure, 1), Timeout));

    [Fact]
    public void A_debug_exit_before_a_signal_keeps_the_guests_status() =>
        Assert.Equal(7, RunCommand.StatusOf(Ended(VmEndReason.GuestExit, 7), new StopRequest(ExitCodes.Terminated, "terminated")));

    [Fact]
    public void A_vm_stopped_by_the_timeout_exits_124() =>
        Assert.Equal(124, RunCommand.StatusOf(Ended(VmEndReason.StoppedOnRequest), Timeout));
}

/// <summary>--timeout while many vCPUs are still being created: run alone, as it measures time.</summary>
[Collection(SerialCollection.Name)]
public sealed class CliSetupTimeoutTests
{
    // The bound holds because the vCPUs enter the guest only once all of them exist (no guest code competes with
    // the set-up) and run at kvmactors.vcpu.thread-nice (the end path's threads win the CPU over the guest).
    [KvmFact]
    public void A_254_vcpu_spinning_guest_with_timeout_5s_ends_within_6s()
    {
        var r = Kvmactors.Run("run", "hocon/guests/spin.conf", "--set", "guest.vcpus=254", "--timeout", "5s");
        Assert.Equal(124, r.ExitCode);
        Assert.True(r.Elapsed < TimeSpan.FromSeconds(6), $"took {r.Elapsed.TotalMilliseconds:0} ms");
        Assert.Equal("", r.Stdout);
        CliGuests.NoStackTrace(r);
    }
}

/// <summary>kvmactors.vcpu.thread-nice: the vCPU threads run at that nice value, the host's own threads at theirs.</summary>
public sealed class CliVcpuPriorityTests
{
    [KvmTheory]
    [InlineData(null, 19)] // reference.conf's default
    [InlineData("7", 7)]
    public void Every_vcpu_thread_runs_at_the_configured_nice_value_and_the_host_threads_do_not(string? set, int nice)
    {
        string[] args = ["run", "hocon/guests/spin.conf", "--set", "guest.vcpus=3", "--timeout", "30s"];
        if (set is not null) args = [.. args, "--set", $"kvmactors.vcpu.thread-nice={set}"];
        using var k = new Kvmactors.Running(args);
        Dictionary<string, int> threads = [];
        Assert.True(k.WaitUntil(_ => (threads = Threads(k.Process.Id)).Keys.Count(n => n.StartsWith("vcpu-")) == 3, TimeSpan.FromSeconds(20)),
            $"vCPU threads seen: {string.Join(", ", threads.Keys)}; stderr: {k.Stderr}");
        Assert.All(threads.Where(t => t.Key.StartsWith("vcpu-")), t => Assert.Equal(nice, t.Value));
        Assert.Equal(0, threads[$"main:{k.Process.Id}"]);
    }

    /// <summary>The process's threads by name (vcpu-N; the main thread as main:PID) and their nice values, from /proc.</summary>
    private static Dictionary<string, int> Threads(int pid)
    {
        var result = new Dictionary<string, int>();
        try
        {
            foreach (var task in Directory.EnumerateDirectories($"/proc/{pid}/task"))
            {
                var stat = File.ReadAllText(Path.Combine(task, "stat"));
                // pid (comm) state ppid ...: the fields after the comm's closing parenthesis; nice is field 19.
                var comm = stat[(stat.IndexOf('(') + 1)..stat.LastIndexOf(')')];
                var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                var tid = Path.GetFileName(task);
                result[tid == pid.ToString() ? $"main:{pid}" : comm] = int.Parse(fields[16]);
            }
        }
        catch (IOException) { } // the process ended while being read: the caller's bound decides
        return result;
    }
}

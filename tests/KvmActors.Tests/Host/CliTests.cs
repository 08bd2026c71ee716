using KvmActors.Tests.Support;
using Xunit;

namespace KvmActors.Tests.Host;

/// <summary>The kvmactors program itself: stdout is the guest's serial output, and each exit status.</summary>
public sealed class CliTests
{
    [KvmFact]
    public void Run_without_config_prints_the_seed_guests_4_and_exits_0()
    {
        var r = Kvmactors.Run("run");
        Assert.Equal(0, r.ExitCode);
        Assert.Equal("4\n", r.Stdout);
        Assert.Contains("Halted", r.Stderr);
    }

    [KvmFact]
    public void Smp_hello_prints_one_line_per_vcpu_and_exits_0()
    {
        var r = Kvmactors.Run("run", "hocon/guests/smp-hello.conf");
        Assert.Equal(0, r.ExitCode);
        Assert.Equal(Enumerable.Range(0, 4).Select(i => $"hello from vCPU {i}"),
            r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Order());
    }

    [KvmFact]
    public void A_guest_failure_exits_1_with_exit_reason_registers_and_instruction_on_stderr()
    {
        // In strict mode an access to a port no device claims is a guest failure.
        var image = Guests.EchoPortWord(0x99);
        var r = Kvmactors.Run("run", "--set", $"guest.image.inline=\"{Guests.Hex(image)}\"", "--set", "guest.cpu.registers.rip=0x1000",
            "--set", "guest.unmapped-io=strict");
        Assert.Equal(1, r.ExitCode);
        Assert.Equal("", r.Stdout);
        Assert.Contains("GuestFailure", r.Stderr);
        Assert.Contains("unmapped port 0x99", r.Stderr);
        Assert.Contains("rip=", r.Stderr);
        Assert.Contains("in ax,dx", r.Stderr);
    }

    [Fact]
    public void A_config_error_exits_2_naming_the_key_and_the_file()
    {
        var file = Path.Combine(Path.GetTempPath(), $"bad-{Guid.NewGuid():N}.conf");
        File.WriteAllText(file, "guest {\n  image.inline = \"f4\"\n  vcpu = 2\n}\n");
        try
        {
            var r = Kvmactors.Run("run", file);
            Assert.Equal(2, r.ExitCode);
            Assert.Equal("", r.Stdout);
            Assert.Contains(file, r.Stderr);
            Assert.Contains("guest.vcpu", r.Stderr);
        }
        finally { File.Delete(file); }
    }

    [Fact]
    public void A_usage_error_exits_2()
    {
        var r = Kvmactors.Run("run", "--timeout", "soon");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("--timeout", r.Stderr);
    }

    [KvmFact]
    public void A_spinning_guest_is_stopped_by_timeout_with_124()
    {
        var r = Kvmactors.Run("run", "--timeout", "1s", "--set", "guest.image.inline=\"eb fe\"", "--set", "guest.cpu.registers.rip=0x1000");
        Assert.Equal(124, r.ExitCode);
        Assert.Contains("StoppedOnRequest", r.Stderr);
    }

    [KvmFact]
    public void Report_file_holds_the_end_registers_exit_counts_and_restarts_as_json()
    {
        var report = Path.Combine(Path.GetTempPath(), $"report-{Guid.NewGuid():N}.json");
        try
        {
            var r = Kvmactors.Run("run", "--report", report, "--set", "guest.faults.vcpus.\"0\".throw-after-exits=2");
            Assert.Equal(0, r.ExitCode);
            Assert.Equal("4\n", r.Stdout);
            using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(report));
            var root = doc.RootElement;
            Assert.Equal("Halted", root.GetProperty("reason").GetString());
            Assert.Equal(0, root.GetProperty("exitStatus").GetInt32());
            var vcpu = root.GetProperty("vcpus")[0];
            Assert.Equal("0xa", vcpu.GetProperty("registers").GetProperty("rax").GetString()); // the last byte the seed printed: '\n'
            Assert.Equal(2, vcpu.GetProperty("exitsByPort").GetProperty("0x3f8").GetInt64());
            Assert.Equal(1, vcpu.GetProperty("exitsByReason").GetProperty("Hlt").GetInt64());
            Assert.Equal(1, vcpu.GetProperty("restarts").GetInt32());
            var failure = root.GetProperty("actorFailures")[0];
            Assert.Equal("vcpu-0", failure.GetProperty("actor").GetString());
            Assert.True(failure.GetProperty("restarted").GetBoolean());
        }
        finally { File.Delete(report); }
    }

    [KvmFact]
    public void Fault_demo_example_prints_its_whole_output_despite_injected_faults()
    {
        var r = Kvmactors.Run("run", "hocon/guests/fault-demo.conf");
        Assert.Equal(0, r.ExitCode);
        Assert.Equal(string.Concat(Enumerable.Repeat("let it crash, lose nothing\n", 3)), r.Stdout);
        Assert.Contains("2 actor restart(s)", r.Stderr);
    }
}

/// <summary>
/// The CLI's time bound, run alone (the serial collection): with other test classes' VMs running in
/// parallel on a 2-CPU machine, process start-up alone can take most of the margin.
/// </summary>
[Collection(SerialCollection.Name)]
public sealed class CliTimingTests
{
    [KvmFact]
    public void Spin_example_with_timeout_1s_exits_124_within_2s()
    {
        var r = Kvmactors.Run("run", "hocon/guests/spin.conf", "--timeout", "1s");
        Assert.Equal(124, r.ExitCode);
        Assert.True(r.Elapsed < TimeSpan.FromSeconds(2), $"took {r.Elapsed.TotalMilliseconds:0} ms");
    }
}

using KvmActors.Runtime.Boot;
using KvmActors.Runtime.Config;
using KvmActors.Tests.Support;
using Xunit;

namespace KvmActors.Tests.Snapshot;

/// <summary>hocon/guests/counter.conf, the snapshot example guest, run through the real CLI.</summary>
public sealed class CounterGuestTests
{
    private static readonly string Conf = SnapshotGuests.ConfPath;

    private static Kvmactors.Result Run(IEnumerable<string> sets) =>
        Kvmactors.Run(TimeSpan.FromSeconds(90), ["run", Conf, "--timeout", "60s", .. sets.SelectMany(s => new[] { "--set", s })]);

    private static void AssertEnded(int status, Kvmactors.Result result) =>
        Assert.True(status == result.ExitCode, $"exit {result.ExitCode}, expected {status}; stderr: {result.Stderr}; stdout tail: {Tail(result.Stdout)}");

    /// <summary>Runs the conf with <paramref name="sets"/>: it prints lines 1..<paramref name="lines"/> and the total, and ends with the done status.</summary>
    private static void AssertCountsTo(int lines, IEnumerable<string> sets)
    {
        var result = Run(sets);
        AssertEnded(SnapshotGuests.DoneStatus, result);
        Assert.Equal(SnapshotGuests.CounterOutput(lines), result.Stdout);
    }

    private static string Tail(string s) => s.Length > 200 ? s[^200..] : s;

    [Fact]
    public void Counter_example_holds_the_assembled_guest_with_its_default_parameters()
    {
        var spec = GuestConfigLoader.LoadFile(Conf);
        var image = SnapshotGuests.Counter();
        Assert.True(image.SequenceEqual(spec.Machine.Image.Bytes), "counter.conf's inline should be:\n" + SnapshotGuests.InlineHex(image));
        Assert.Equal((ulong)SnapshotGuests.CounterLoad, spec.Machine.Image.LoadAddress);
        Assert.Equal(CpuMode.Protected, spec.Machine.Platform.Mode);
        Assert.True(spec.Machine.Platform.Irqchip);
        Assert.Equal(4, spec.Machine.VcpuCount);
        var registers = spec.Machine.Cpu.Registers;
        Assert.Equal((ulong)SnapshotGuests.CounterEntry, registers["rip"]);
        Assert.Equal((ulong)SnapshotGuests.DefaultLines, registers["rdi"]);
        Assert.Equal((ulong)SnapshotGuests.DefaultDelay, registers["rsi"]);
        Assert.Equal((ulong)SnapshotGuests.DefaultPages, registers["rdx"]);
    }

    [KvmFact]
    public void Four_vcpus_share_one_sequence_and_print_it_in_order_then_the_total()
    {
        AssertCountsTo(200, SnapshotGuests.Overrides(lines: 200));
    }

    [KvmTheory]
    [InlineData(1)]
    [InlineData(8)]
    public void Other_vcpu_counts_print_the_same_bytes(int vcpus)
    {
        AssertCountsTo(200, SnapshotGuests.Overrides(lines: 200, vcpus: vcpus));
    }

    [KvmFact]
    public void With_pages_to_keep_writing_each_page_is_checked_and_rewritten_as_the_counter_wraps_around_them()
    {
        // 37 pages, 200 lines: every page is written five or six times, each time checked against the last write.
        AssertCountsTo(200, SnapshotGuests.Overrides(lines: 200, pages: 37));
    }

    [KvmFact]
    public void The_64_mib_migration_variant_runs_with_every_page_above_1_mib()
    {
        Assert.Equal(16128, SnapshotGuests.PagesFor(64UL << 20));
        AssertCountsTo(100, SnapshotGuests.Migration64MiB(lines: 100));
    }

    [KvmFact]
    public void A_page_that_does_not_keep_what_was_written_is_reported_as_lost_memory()
    {
        // 2 MiB of RAM holds pages 0..255 above 1 MiB; line 256 goes to page 256, at 2 MiB: unmapped, it reads all ones.
        var result = Run(SnapshotGuests.Overrides(lines: 300, pages: 300));
        AssertEnded(SnapshotGuests.MemoryLostStatus, result);
        Assert.Equal(string.Concat(Enumerable.Range(1, 255).Select(SnapshotGuests.Line)) + SnapshotGuests.MemoryLostText, result.Stdout);
    }

    [KvmFact]
    public void Without_a_uart_keeping_its_scratch_register_the_guest_ends_with_uart_state_lost()
    {
        // No COM1: its ports are unmapped and read all ones (LSR says ready, the scratch register reads 0xff).
        var result = Run([.. SnapshotGuests.Overrides(lines: 200), "guest.devices.com1.enabled=false"]);
        AssertEnded(SnapshotGuests.UartLostStatus, result);
        Assert.Equal("", result.Stdout);
    }
}

using Akka.Actor;
using Iced.Intel;
using KvmActors.Runtime.Config;
using KvmActors.Runtime.Snapshot;
using KvmActors.Runtime.Vm;
using KvmActors.Sdk;
using KvmActors.Tests.Support;
using Xunit;
using Xunit.Abstractions;
using static Iced.Intel.AssemblerRegisters;

namespace KvmActors.Tests.Snapshot;

/// <summary>
/// Snapshots taken where an exit is half done: in the middle of a long <c>rep outsb</c> (KVM finishes the string
/// only when KVM_RUN is entered again) and while a read waits for a slow device. The restored VM must go on with
/// no byte lost or written twice.
/// </summary>
public sealed class SnapshotEdgeTests(ITestOutputHelper output)
    // Every read a round trip to the device (no read snapshots), so a slow device really keeps a read waiting.
    : SnapshotTestKit(output, Akka.Configuration.ConfigurationFactory.ParseString("kvmactors.devices.read-snapshots = off"))
{
    /// <summary>Real mode: <paramref name="rounds"/> times one <c>rep outsb</c> of the whole text to COM1 (no polling), then HLT.</summary>
    private static byte[] RepOutsbLoop(string text, int rounds)
    {
        var bytes = System.Text.Encoding.ASCII.GetBytes(text);
        byte[] Code(ushort message) => Guests.Assemble(16, 0x1000, a =>
        {
            var loop = a.CreateLabel();
            a.mov(bx, (ushort)rounds);
            a.cld();
            a.Label(ref loop);
            a.mov(si, message);
            a.mov(cx, (ushort)bytes.Length);
            a.mov(dx, 0x3f8);
            a.rep.outsb();
            a.dec(bx);
            a.jnz(loop);
            a.hlt();
        });
        var length = Code(0).Length;
        return [.. Code((ushort)(0x1000 + length)), .. bytes];
    }

    [KvmFact]
    public void A_snapshot_in_the_middle_of_rep_outsb_loses_and_repeats_no_byte()
    {
        // 6000 bytes: more than one string-I/O exit (KVM hands userspace at most a page of data per exit), so a
        // pause between two of them leaves the instruction half done, with RCX and RSI part way.
        var text = string.Concat(Enumerable.Range(0, 600).Select(i => $"{i % 1000:D3}-abcde\n"))[..6000];
        const int rounds = 200; // seconds of output: the snapshots land mid-run even on a loaded machine
        var expected = string.Concat(Enumerable.Repeat(text, rounds));
        for (var attempt = 0; attempt < 3; attempt++)
        {
            var sink = SinkName();
            var dir = NewSnapshotDir();
            var (before, _) = RunThenSnapshot(Guest(RealModeGuest(RepOutsbLoop(text, rounds), sink)), sink, 6000 * 5 + 1000 * attempt, dir);
            // Three whole strings on from the snapshot: the one cut in two and the next ones.
            var after = RunRestoredFor(dir, SinkName(), 6000 * 3);
            Assert.True(expected[..(before.Length + after.Length)] == before + after,
                $"attempt {attempt}: output differs after the snapshot at byte {before.Length}");
        }
    }

    [KvmFact]
    public void A_snapshot_while_a_read_waits_for_a_slow_device_completes_the_read_first()
    {
        // Every LSR poll is answered 2 ms late: most of the time the vCPU is waiting for a read when the pause comes.
        const string line = "slow line\n";
        var sink = SinkName();
        var spec = Guest(RealModeGuest(Guests.PrintText(line, 40), sink, "faults.devices.com1.reply-delay = 2ms"));
        var dir = NewSnapshotDir();
        var (before, _) = RunThenSnapshot(spec, sink, line.Length * 10, dir);
        var after = SinkName();
        var ended = RunRestored(dir, after);
        Assert.True(ended.Reason == VmEndReason.Halted, ended.ToString());
        Assert.Equal(string.Concat(Enumerable.Repeat(line, 40)), before + SinkText(after));
    }
}

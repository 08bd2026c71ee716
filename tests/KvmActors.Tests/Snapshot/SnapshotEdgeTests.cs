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
    : KvmTestKit(output, Akka.Configuration.ConfigurationFactory.ParseString("kvmactors.devices.read-snapshots = off")), IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kvmactors-snap-edge-").FullName;

    public new void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
        base.Dispose();
    }

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

    /// <summary>Snapshot (paused after it) once <paramref name="afterBytes"/> are out, stop, restore; both outputs.</summary>
    private (string Before, string After, VmEnded Restored) SnapshotAndRestore(GuestSpec spec, string sink, int afterBytes)
    {
        var dir = Path.Combine(_dir, Guid.NewGuid().ToString("N"));
        var (vm, owner) = Start(spec);
        AwaitCondition(() => SinkText(sink).Length >= afterBytes, TimeSpan.FromSeconds(20));
        vm.Tell(new SnapshotVm(dir, Resume: false), TestActor);
        ExpectMsg<VmSnapshotted>(TimeSpan.FromSeconds(20));
        Watch(vm);
        vm.Tell(new StopVm("test: snapshot taken"));
        owner.ExpectMsg<VmEnded>(TimeSpan.FromSeconds(10));
        ExpectTerminated(vm);
        var before = SinkText(sink);

        var loaded = SnapshotFiles.Load(dir);
        var after = SinkName();
        var restoredSpec = GuestConfigLoader.FromSnapshot(loaded, [$"guest.devices.com1.options.sink = \"memory:{after}\""]);
        var restoredOwner = CreateTestProbe();
        var restored = Sys.ActorOf(VmActor.Props(restoredSpec, restoredOwner.Ref, Settings, VmRestore.From(loaded)));
        Watch(restored);
        var ended = restoredOwner.ExpectMsg<VmEnded>(TimeSpan.FromSeconds(60));
        ExpectTerminated(restored);
        return (before, SinkText(after), ended);
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
            var (before, after, ended) = SnapshotAndRestore(Guest(RealModeGuest(RepOutsbLoop(text, rounds), sink)), sink, 6000 * 5 + 1000 * attempt);
            Assert.True(ended.Reason == VmEndReason.Halted, ended.ToString());
            Assert.Equal(expected.Length, before.Length + after.Length);
            Assert.True(expected == before + after, $"attempt {attempt}: output differs after the snapshot at byte {before.Length}");
        }
    }

    [KvmFact]
    public void A_snapshot_while_a_read_waits_for_a_slow_device_completes_the_read_first()
    {
        // Every LSR poll is answered 2 ms late: most of the time the vCPU is waiting for a read when the pause comes.
        const string line = "slow line\n";
        var sink = SinkName();
        var spec = Guest(RealModeGuest(Guests.PrintText(line, 40), sink, "faults.devices.com1.reply-delay = 2ms"));
        var (before, after, ended) = SnapshotAndRestore(spec, sink, line.Length * 10);
        Assert.True(ended.Reason == VmEndReason.Halted, ended.ToString());
        Assert.Equal(string.Concat(Enumerable.Repeat(line, 40)), before + after);
    }
}

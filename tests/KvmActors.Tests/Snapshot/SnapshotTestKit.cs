using Akka.Actor;
using Akka.Configuration;
using KvmActors.Runtime.Config;
using KvmActors.Runtime.Snapshot;
using KvmActors.Runtime.Vm;
using KvmActors.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace KvmActors.Tests.Snapshot;

/// <summary>
/// In-process snapshot tests: a temporary snapshot folder, a VM run until it has printed enough, snapshotted
/// (left paused) and stopped, and a new VM restored from the directory with its COM1 on a memory sink.
/// </summary>
public abstract class SnapshotTestKit(ITestOutputHelper output, Config? extra = null) : KvmTestKit(output, extra), IDisposable
{
    protected string SnapshotRoot { get; } = Directory.CreateTempSubdirectory("kvmactors-snap-").FullName;

    public new void Dispose()
    {
        try { Directory.Delete(SnapshotRoot, recursive: true); } catch (IOException) { }
        base.Dispose();
    }

    protected string NewSnapshotDir() => Path.Combine(SnapshotRoot, Guid.NewGuid().ToString("N"));

    /// <summary>Start, wait for <paramref name="afterBytes"/> of output, snapshot (paused after it), stop: the output then and the answer.</summary>
    protected (string Output, VmSnapshotted Snapshot) RunThenSnapshot(GuestSpec spec, string sink, int afterBytes, string dir)
    {
        var (vm, owner) = Start(spec);
        AwaitCondition(() => SinkText(sink).Length >= afterBytes, TimeSpan.FromSeconds(20));
        vm.Tell(new SnapshotVm(dir, Resume: false), TestActor);
        var done = ExpectMsg<VmSnapshotted>(TimeSpan.FromSeconds(20));
        var atSnapshot = SinkText(sink);
        Watch(vm);
        vm.Tell(new StopVm("test: snapshot taken"));
        owner.ExpectMsg<VmEnded>(TimeSpan.FromSeconds(10));
        ExpectTerminated(vm);
        // Paused from the snapshot on: nothing more came out.
        Assert.Equal(atSnapshot, SinkText(sink));
        return (atSnapshot, done);
    }

    /// <summary>
    /// A VM restored from <paramref name="dir"/> run until it has printed <paramref name="bytes"/>, then stopped: what
    /// it printed. (Long guests keep the snapshot mid-run on a loaded machine; their restored copy need not run to its end.)
    /// </summary>
    protected string RunRestoredFor(string dir, string sink, int bytes)
    {
        var loaded = SnapshotFiles.Load(dir);
        var spec = GuestConfigLoader.FromSnapshot(loaded, [$"guest.devices.com1.options.sink = \"memory:{sink}\""]);
        var owner = CreateTestProbe();
        var vm = Sys.ActorOf(VmActor.Props(spec, owner.Ref, Settings, VmRestore.From(loaded)));
        Watch(vm);
        AwaitCondition(() => SinkText(sink).Length >= bytes, TimeSpan.FromSeconds(30));
        vm.Tell(new StopVm("test: enough output"));
        owner.ExpectMsg<VmEnded>(TimeSpan.FromSeconds(10));
        ExpectTerminated(vm);
        return SinkText(sink);
    }

    /// <summary>A VM restored from <paramref name="dir"/>, COM1 on the memory sink <paramref name="sink"/>, run to its end.</summary>
    protected VmEnded RunRestored(string dir, string sink)
    {
        var loaded = SnapshotFiles.Load(dir);
        var spec = GuestConfigLoader.FromSnapshot(loaded, [$"guest.devices.com1.options.sink = \"memory:{sink}\""]);
        var owner = CreateTestProbe();
        var vm = Sys.ActorOf(VmActor.Props(spec, owner.Ref, Settings, VmRestore.From(loaded)));
        Watch(vm);
        var ended = owner.ExpectMsg<VmEnded>(TimeSpan.FromSeconds(60));
        ExpectTerminated(vm);
        return ended;
    }
}

using KvmActors.Runtime.Config;
using KvmActors.Runtime.Vm;

namespace KvmActors.Runtime.Snapshot;

/// <summary>
/// What a VM is restored from: a snapshot's state and where its memory comes from (a snapshot directory, or
/// the pages a migration sent). Given to <see cref="VmActor.Props"/>, which builds the VM from it instead of booting.
/// </summary>
public sealed record VmRestore(SnapshotState State, RegionLoader LoadRegion)
{
    /// <summary>From a snapshot directory read with <see cref="SnapshotFiles.Load"/>.</summary>
    public static VmRestore From(LoadedSnapshot snapshot) =>
        new(snapshot.State, (index, _, bytes) => SnapshotFiles.LoadRegion(snapshot, index, bytes));

    public MachineRestore ForMachine() => new(State.Vcpus.Select(v => v.State).ToList(), State.Vm, LoadRegion);

    /// <summary>The guest config (re-bound from the snapshot) must describe the machine the snapshot holds.</summary>
    public void CheckMatches(GuestSpec spec)
    {
        var regions = spec.Machine.Memory.OrderBy(r => r.GuestAddress).ToList();
        if (regions.Count != State.Memory.Count ||
            regions.Zip(State.Memory).Any(p => p.First.Name != p.Second.Name || p.First.GuestAddress != p.Second.GuestAddress ||
                                               p.First.Size != p.Second.Size || p.First.ReadOnly != p.Second.ReadOnly))
            throw new SnapshotException("the snapshot's memory regions differ from its guest config's");
        if (spec.Machine.Platform.Irqchip != State.Irqchip)
            throw new SnapshotException($"the snapshot was taken {(State.Irqchip ? "with" : "without")} an in-kernel irqchip, its guest config says otherwise");
        var devices = spec.Devices.Select(d => (d.Name, d.Type)).Order().ToList();
        var saved = State.Devices.Select(d => (d.Name, d.Type)).Order().ToList();
        if (!devices.SequenceEqual(saved))
            throw new SnapshotException($"the snapshot's devices ({string.Join(", ", saved.Select(d => $"{d.Name}:{d.Type}"))}) differ from its guest config's ({string.Join(", ", devices.Select(d => $"{d.Name}:{d.Type}"))})");
    }
}

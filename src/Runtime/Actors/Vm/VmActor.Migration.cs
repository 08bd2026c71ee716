using Akka.Actor;
using Akka.Event;
using KvmActors.Runtime.Memory;
using KvmActors.Runtime.Snapshot;
using KvmActors.Sdk;

namespace KvmActors.Runtime.Vm;

// Live migration, source side (the protocol: MigrationMessages.cs). Pre-copy: round 0 sends every page that is
// not all zero while the guest runs, with KVM's dirty-page log on; each later round sends the pages the guest
// dirtied during the one before; the final round runs with the guest paused (the snapshot's capture path), after
// which the VM's state goes too. Pages are copied here, on the VM actor's thread: the guest may write a page
// while it is copied, and then the log has it dirty again for the next round.
public sealed partial class VmActor
{
    private sealed class MigrationSource(bool wasPaused, IReadOnlyList<MemoryRegionSpec> regions)
    {
        public readonly bool WasPaused = wasPaused;
        public readonly IReadOnlyList<MemoryRegionSpec> Regions = regions;
        public int Round;
        /// <summary>Pages still to send this round, a bitmap per region (bit n: page n).</summary>
        public ulong[][] Pending = [];
        public int Region;
        public long Page;
        /// <summary>The target's memory starts zeroed: round 0 skips all-zero pages; later rounds send them as zero runs.</summary>
        public bool SkipZeroPages = true;
        public bool Final;
    }

    private MigrationSource? _migration;

    private void OnMigrationMessage(object message)
    {
        switch (message)
        {
            case BeginMigration:
                BeginMigrationSource();
                break;
            case ReadMigrationPages read when _migration is { } m:
                Sender.Tell(_end is not null ? new MigrationRefused($"the VM ended: {_end.Value.Reason} ({_end.Value.Detail})") : ReadPages(m, read.MaxBytes));
                break;
            case NextMigrationRound when _migration is { } m:
                if (_end is not null) { Sender.Tell(new MigrationRefused($"the VM ended: {_end.Value.Reason} ({_end.Value.Detail})")); break; }
                var dirty = TakeDirty(m);
                m.Round++;
                Sender.Tell(new MigrationRoundStarted(m.Round, dirty));
                break;
            case FinishMigration when _migration is { } m:
                if (CannotCapture(forMigration: true) is { } refusal) { Sender.Tell(new MigrationRefused(refusal)); break; }
                StartCapture(new SnapshotJob(Sender, null, resume: true, m.WasPaused));
                break;
            case EndMigration end when _migration is { } m:
                _migration = null;
                if (end.Succeeded)
                {
                    EndVm(VmEndReason.Migrated, end.Detail, 0, null);
                    break;
                }
                _log.Warning("VM '{0}': migration failed, the guest runs on here: {1}", _spec.Name, end.Detail);
                if (_end is null)
                {
                    _machine?.Memory.StopDirtyLog();
                    if (m.Final && !m.WasPaused) ResumeVcpus();
                }
                break;
            default:
                Sender.Tell(new MigrationRefused($"no migration of VM '{_spec.Name}' is under way ({message.GetType().Name})"));
                break;
        }
    }

    private void BeginMigrationSource()
    {
        var refusal = _migration is not null ? "the VM is already being migrated" : CannotCapture(forMigration: false);
        if (refusal is not null)
        {
            Sender.Tell(new MigrationRefused(refusal));
            return;
        }
        var memory = _machine!.Memory;
        memory.StartDirtyLog();
        var regions = memory.Regions;
        var m = _migration = new MigrationSource(_pausedByRequest, regions);
        m.Pending = regions.Select(r => AllPages((long)(r.Size / GuestMemory.PageSize))).ToArray();
        var pages = regions.Sum(r => (long)(r.Size / GuestMemory.PageSize));
        Sender.Tell(new MigrationBegun(new SnapshotGuest(_spec.SourceFile, _spec.BaseDirectory, _spec.SourceConfig),
            regions.Select((r, i) => new SnapshotRegion(r.Name, r.GuestAddress, r.Size, r.ReadOnly, SnapshotFiles.RegionFileName(i, r.Name))).ToList(),
            _machine.HasIrqchip, _spec.Machine.VcpuCount, pages));
    }

    /// <summary>The final state is captured (the guest is paused): queue the last dirty pages and hand it over.</summary>
    private void MigrationStateCaptured(IActorRef requester, SnapshotState state)
    {
        if (_migration is not { } m)
        {
            requester.Tell(new MigrationRefused("the migration was abandoned"));
            return;
        }
        m.Final = true;
        var dirty = TakeDirty(m);
        m.Round++;
        requester.Tell(new MigrationFinalState(state, dirty));
    }

    /// <summary>
    /// The pages the guest dirtied since the last call join the pages still pending (a round may end before all
    /// were sent: the last pre-copy round goes with the final one); returns how many are pending now.
    /// </summary>
    private long TakeDirty(MigrationSource m)
    {
        var pending = m.Pending;
        foreach (var d in _machine!.Memory.TakeDirtyPages())
        {
            var bits = pending[d.RegionIndex];
            for (var w = 0; w < Math.Min(d.Bitmap.Length, bits.Length); w++) bits[w] |= d.Bitmap[w];
        }
        m.Region = 0;
        m.Page = 0;
        m.SkipZeroPages = false;
        return pending.Sum(b => b.Sum(w => (long)ulong.PopCount(w)));
    }

    /// <summary>The next runs of pending pages, copied, up to <paramref name="maxBytes"/> (at least one page).</summary>
    private MigrationPages ReadPages(MigrationSource m, int maxBytes)
    {
        var runs = new List<PageRun>();
        var budget = Math.Max(maxBytes, (int)GuestMemory.PageSize);
        var pageSize = (int)GuestMemory.PageSize;
        var memory = _machine!.Memory;
        while (m.Region < m.Regions.Count && budget >= pageSize)
        {
            var bitmap = m.Pending[m.Region];
            var pages = (long)(m.Regions[m.Region].Size / GuestMemory.PageSize);
            var bytes = memory.RegionBytes(m.Region);
            var page = m.Page;
            while (page < pages && (bitmap[page >> 6] & (1UL << (int)(page & 63))) == 0)
            {
                // Whole empty words at once: most of a later round's bitmap is zero.
                if ((page & 63) == 0 && bitmap[page >> 6] == 0) page += 64;
                else page++;
            }
            if (page >= pages)
            {
                m.Region++;
                m.Page = 0;
                continue;
            }
            // One run: consecutive pending pages that are all zero, or all not, within the budget.
            var first = page;
            var zero = !bytes.Slice((int)(first * pageSize), pageSize).ContainsAnyExcept((byte)0);
            while (page < pages && (bitmap[page >> 6] & (1UL << (int)(page & 63))) != 0 &&
                   (zero || (page - first + 1) * pageSize <= budget) &&
                   !bytes.Slice((int)(page * pageSize), pageSize).ContainsAnyExcept((byte)0) == zero)
                page++;
            var count = (int)(page - first);
            m.Page = page;
            for (var p = first; p < page; p++) bitmap[p >> 6] &= ~(1UL << (int)(p & 63)); // sent (or known zero)
            if (zero)
            {
                if (!m.SkipZeroPages) runs.Add(new PageRun(m.Region, first, count, null));
                continue;
            }
            runs.Add(new PageRun(m.Region, first, count, bytes.Slice((int)(first * pageSize), count * pageSize).ToArray()));
            budget -= count * pageSize;
        }
        return new MigrationPages(runs, m.Region >= m.Regions.Count);
    }

    private static ulong[] AllPages(long pages)
    {
        var bitmap = new ulong[(pages + 63) / 64];
        Array.Fill(bitmap, ulong.MaxValue);
        if (pages % 64 != 0) bitmap[^1] = (1UL << (int)(pages % 64)) - 1;
        return bitmap;
    }
}

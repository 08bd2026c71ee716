using KvmActors.Runtime.Snapshot;

namespace KvmActors.Runtime.Vm;

// Live migration, source side, between the VM actor and whoever carries the pages to the other host (the serve
// host's migration sender): the VM actor is the only one that touches guest memory, so pages leave it as copies
// in messages, and no other thread can read memory the VM has released.
//
//   BeginMigration          -> MigrationBegun: dirty-page logging is on, round 0 covers every page
//   ReadMigrationPages (xN) -> MigrationPages: the next pages of the round, until RoundDone
//   NextMigrationRound      -> MigrationRoundStarted: the pages dirtied since the last round (read them as above)
//   FinishMigration         -> MigrationFinalState: the VM is paused, its state read, the last dirty pages queued
//   EndMigration            -> the VM ends as Migrated, or (failed) logging stops and the guest runs on
// Any of them can be answered with MigrationRefused.

public sealed record BeginMigration;

public sealed record MigrationBegun(SnapshotGuest Guest, IReadOnlyList<SnapshotRegion> Memory, bool Irqchip, int Vcpus, long Pages);

/// <summary>Copy at most <paramref name="MaxBytes"/> of the current round's pages.</summary>
public sealed record ReadMigrationPages(int MaxBytes);

/// <summary>Pages <paramref name="FirstPage"/>.. of region <paramref name="Region"/>; <paramref name="Bytes"/> null: they are all zero.</summary>
public sealed record PageRun(int Region, long FirstPage, int Count, byte[]? Bytes);

public sealed record MigrationPages(IReadOnlyList<PageRun> Runs, bool RoundDone);

public sealed record NextMigrationRound;

public sealed record MigrationRoundStarted(int Round, long DirtyPages);

public sealed record FinishMigration;

/// <summary>The paused VM's state; its last dirty pages are the current round (read them, then send the state).</summary>
public sealed record MigrationFinalState(SnapshotState State, long DirtyPages);

public sealed record EndMigration(bool Succeeded, string Detail);

public sealed record MigrationRefused(string Reason);

using Akka.Actor;
using Akka.Hosting;
using Akka.Persistence;
using Akka.Persistence.Hosting;
using Akka.Persistence.Sql.Hosting;
using Microsoft.Data.Sqlite;
using Serilog;

namespace KvmActors.Host.Fleet;

/// <summary>
/// serve --journal PATH (or kvmactors.fleet.journal): Akka.Persistence.Sql on a SQLite file, so that the fleet outlives
/// a whole-cluster restart. Sharding keeps its coordinator's state and its remembered entities there
/// (state-store-mode = persistence, remember-entities-store = eventsourced), and every VM record written to
/// Distributed Data is also saved there (as the snapshot of persistence id <c>kvmactors-vm-record-ID</c>).
/// <para>
/// One file for the whole fleet, not one per node: a shard's remembered entities are events of that shard, read by
/// whichever node the shard starts on next (after a drain, a death or a restart), so every node must read the same
/// journal. SQLite's locking serializes the nodes' writes on one machine (WAL mode; a writer waits for the lock);
/// across machines the same plugin runs on a database server instead (not offered by this option).
/// </para>
/// <para>
/// The records stay in Distributed Data too: that copy is the fenced, majority-read one that recovery decides on;
/// the journal's copy is read only when Distributed Data has none, i.e. after the whole cluster was down.
/// </para>
/// </summary>
public static class FleetJournal
{
    /// <summary>The config key (a path; "" is off). --journal overrides it.</summary>
    public const string Key = "kvmactors.fleet.journal";

    /// <summary>
    /// The journal this serve uses: --journal, else the host file's kvmactors.fleet.journal (relative to the current
    /// directory), else none. Null when fine; else the usage error, naming the option or the key and file.
    /// </summary>
    public static string? FromCommandLine(string? option, string? configPath, KvmActors.Host.Serve.HostSettings settings, FleetOptions? fleet, out string? path)
    {
        path = null;
        var fromFile = settings.RuntimeConfig.IsEmpty ? "" : settings.RuntimeConfig.GetString(Key, "");
        var (text, what) = option is not null ? (option, $"--journal '{option}'") : (fromFile, $"{Key} = \"{fromFile}\" in {configPath}");
        if (text.Length == 0) return option is not null ? "--journal: give the SQLite file's path" : null;
        if (fleet is null) return $"{what}: the journal is the fleet's; it needs --cluster HOST:PORT";
        var full = Path.GetFullPath(text);
        if (Check(full) is { } problem) return $"{what}: {problem}";
        path = full;
        return null;
    }

    /// <summary>The connection string for <paramref name="path"/>.</summary>
    public static string ConnectionString(string path) => new SqliteConnectionStringBuilder
    {
        DataSource = path, Mode = SqliteOpenMode.ReadWriteCreate, Pooling = true, DefaultTimeout = 30,
    }.ToString();

    /// <summary>Opens (creating it if need be) the journal file and takes its write lock once: null when usable, else why not.</summary>
    public static string? Check(string path)
    {
        var dir = Path.GetDirectoryName(path);
        if (string.IsNullOrEmpty(dir) || !Directory.Exists(dir)) return $"the folder '{dir}' does not exist";
        if (Directory.Exists(path)) return "it is a folder (give a file: the SQLite journal)";
        try
        {
            using var c = new SqliteConnection(ConnectionString(path));
            c.Open();
            using var cmd = c.CreateCommand();
            // WAL: readers do not block the other nodes' writer; BEGIN IMMEDIATE takes the write lock (a read-only file fails here).
            cmd.CommandText = "PRAGMA journal_mode=WAL; BEGIN IMMEDIATE; CREATE TABLE IF NOT EXISTS kvmactors_journal_check(x); ROLLBACK;";
            cmd.ExecuteNonQuery();
            return null;
        }
        catch (Exception e) when (e is SqliteException or IOException or UnauthorizedAccessException)
        {
            return $"it cannot be opened for writing as a SQLite file: {e.Message}";
        }
        finally { SqliteConnection.ClearAllPools(); }
    }

    /// <summary>The default journal and snapshot store: Akka.Persistence.Sql on the SQLite file (tables made on first use).</summary>
    public static void AddToAkka(AkkaConfigurationBuilder akka, string path)
    {
        akka.WithSqlPersistence(ConnectionString(path), LinqToDB.ProviderName.SQLiteMS, PersistenceMode.Both, autoInitialize: true, isDefaultPlugin: true);
        Log.Information("kvmactors serve: fleet journal {Path} (Akka.Persistence.Sql, SQLite)", path);
    }

    /// <summary>
    /// The journal this node's actor system uses (set by <see cref="FleetRecoverySetup.Hocon"/>): a key reference.conf
    /// has no default for, so the host's own config, added over it, does not hide it.
    /// </summary>
    public const string InUseKey = "kvmactors.fleet.journal-in-use";

    public static bool Enabled(ActorSystem system) => system.Settings.Config.GetString(InUseKey, "").Length > 0;

    private static string PersistenceId(string vmId) => $"kvmactors-vm-record-{vmId}";

    private static IActorRef Store(ActorSystem system) => Persistence.Instance.Apply(system).SnapshotStoreFor(null);

    /// <summary>Saves the record (a later save wins: its sequence number is the time, and older ones are deleted).</summary>
    public static async Task<bool> SaveAsync(ActorSystem system, VmRecord record, TimeSpan timeout)
    {
        var pid = PersistenceId(record.Id);
        var seq = DateTime.UtcNow.Ticks;
        try
        {
            var answer = await Store(system).Ask<ISnapshotResponse>(new SaveSnapshot(new SnapshotMetadata(pid, seq, DateTime.UtcNow), record.ToJson()), timeout);
            if (answer is not SaveSnapshotSuccess)
            {
                Log.Warning("fleet: VM {VmId}: its record could not be saved in the journal: {Answer}", record.Id, (answer as SaveSnapshotFailure)?.Cause?.Message);
                return false;
            }
            Store(system).Tell(new DeleteSnapshots(pid, new SnapshotSelectionCriteria(seq - 1)));
            return true;
        }
        catch (AskTimeoutException)
        {
            Log.Warning("fleet: VM {VmId}: the journal did not confirm its record within {Timeout}", record.Id, timeout);
            return false;
        }
    }

    /// <summary>The record the journal has (null: none, or the journal did not answer).</summary>
    public static async Task<VmRecord?> LoadAsync(ActorSystem system, string vmId, TimeSpan timeout)
    {
        try
        {
            var answer = await Store(system).Ask<ISnapshotResponse>(new LoadSnapshot(PersistenceId(vmId), SnapshotSelectionCriteria.Latest, long.MaxValue), timeout);
            return answer is LoadSnapshotResult { Snapshot.Snapshot: string json } ? VmRecord.FromJson(json) : null;
        }
        catch (AskTimeoutException) { return null; }
    }

    public static async Task DeleteAsync(ActorSystem system, string vmId, TimeSpan timeout)
    {
        try { await Store(system).Ask<ISnapshotResponse>(new DeleteSnapshots(PersistenceId(vmId), SnapshotSelectionCriteria.Latest), timeout); }
        catch (AskTimeoutException) { }
    }
}

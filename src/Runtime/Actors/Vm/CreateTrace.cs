using System.Collections.Concurrent;
using System.Diagnostics;

namespace KvmActors.Runtime.Vm;

/// <summary>
/// Timestamps of a VM's set-up stages, for <c>kvmactors bench density</c>'s create → first exit breakdown: off
/// unless a benchmark turns it on (then one enqueue per stage per VM; off, one static read).
/// </summary>
public static class CreateTrace
{
    private static readonly ConcurrentQueue<(string Vm, string Stage, long Timestamp)> Marks = new();

    /// <summary>Set by the benchmark before it creates the VMs it traces.</summary>
    public static volatile bool Enabled;

    /// <summary>Stage <paramref name="stage"/> of the VM whose actor is named <paramref name="vm"/> happened now.</summary>
    public static void Mark(string vm, string stage)
    {
        if (Enabled) Marks.Enqueue((vm, stage, Stopwatch.GetTimestamp()));
    }

    /// <summary>Every mark since the last call, oldest first.</summary>
    public static List<(string Vm, string Stage, long Timestamp)> Drain()
    {
        var all = new List<(string, string, long)>();
        while (Marks.TryDequeue(out var m)) all.Add(m);
        return all;
    }
}

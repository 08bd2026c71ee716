using System.Collections.Concurrent;
using KvmActors.Gdb;

namespace KvmActors.Tests.Gdb;

/// <summary>
/// An <see cref="IGdbTarget"/> over plain arrays: 64 KiB of memory, one register file per thread.
/// A step advances the stepping thread's PC by one byte (as if every instruction were a nop); a
/// continue runs to the lowest breakpoint at or after the PC, or until interrupted.
/// </summary>
internal sealed class FakeGdbTarget(int threads = 2) : IGdbTarget
{
    public readonly byte[] Memory = new byte[0x10000];
    public readonly ConcurrentDictionary<int, X86RegisterFile> Registers = new(
        Enumerable.Range(1, threads).Select(t => KeyValuePair.Create(t, new X86RegisterFile { Rip = 0x1000 })));
    public readonly ConcurrentDictionary<ulong, GdbBreakpointType> Breakpoints = new();
    public readonly ConcurrentQueue<string> Calls = new();
    public volatile bool SupportsWatchpoints = true;
    public bool Detached { get; private set; }
    public bool Killed { get; private set; }
    public int Interrupts;
    private TaskCompletionSource<GdbStopEvent>? _running;

    /// <summary>Completes when a continue is waiting for an interrupt (no breakpoint ahead).</summary>
    public readonly TaskCompletionSource RunningForever = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public Task<GdbStopEvent> AttachAsync(CancellationToken ct) => Task.FromResult(GdbStopEvent.Interrupted(1));

    public Task<IReadOnlyList<int>> GetThreadsAsync(CancellationToken ct) =>
        Task.FromResult<IReadOnlyList<int>>(Registers.Keys.Order().ToArray());

    public Task<X86RegisterFile> ReadRegistersAsync(int threadId, CancellationToken ct) => Task.FromResult(Registers[threadId]);

    public Task<bool> WriteRegistersAsync(int threadId, X86RegisterFile registers, CancellationToken ct)
    {
        Calls.Enqueue($"write-registers {threadId}");
        Registers[threadId] = registers;
        return Task.FromResult(true);
    }

    public Task<byte[]> ReadMemoryAsync(int threadId, ulong address, int length, CancellationToken ct)
    {
        if (address >= (ulong)Memory.Length) return Task.FromResult(Array.Empty<byte>());
        var n = (int)Math.Min((ulong)length, (ulong)Memory.Length - address);
        return Task.FromResult(Memory.AsSpan((int)address, n).ToArray());
    }

    public Task<bool> WriteMemoryAsync(int threadId, ulong address, ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        Calls.Enqueue($"write-memory {address:x} {data.Length}");
        if (address + (ulong)data.Length > (ulong)Memory.Length) return Task.FromResult(false);
        data.Span.CopyTo(Memory.AsSpan((int)address));
        return Task.FromResult(true);
    }

    public Task<GdbStopEvent> ResumeAsync(IReadOnlyList<GdbResumeAction> actions, CancellationToken ct)
    {
        Calls.Enqueue("resume " + string.Join(";", actions.Select(a => $"{a.Kind}:{a.ThreadId}")));
        foreach (var t in Registers.Keys.Order())
            if (GdbResume.ActionFor(actions, t)?.Kind == GdbResumeKind.Step)
            {
                Registers[t] = Registers[t] with { Rip = Registers[t].Rip + 1 };
                return Task.FromResult(GdbStopEvent.Stepped(t));
            }
        foreach (var t in Registers.Keys.Order())
        {
            if (GdbResume.ActionFor(actions, t)?.Kind != GdbResumeKind.Continue) continue;
            var pc = Registers[t].Rip;
            var ahead = Breakpoints.Where(b => b.Value is GdbBreakpointType.Software or GdbBreakpointType.Hardware && b.Key >= pc)
                .OrderBy(b => b.Key).ToList();
            if (ahead.Count > 0)
            {
                Registers[t] = Registers[t] with { Rip = ahead[0].Key };
                return Task.FromResult(ahead[0].Value == GdbBreakpointType.Software
                    ? GdbStopEvent.SoftwareBreakpoint(t)
                    : GdbStopEvent.HardwareBreakpoint(t));
            }
        }
        _running = new TaskCompletionSource<GdbStopEvent>(TaskCreationOptions.RunContinuationsAsynchronously);
        RunningForever.TrySetResult();
        return _running.Task;
    }

    public Task InterruptAsync(CancellationToken ct)
    {
        Interlocked.Increment(ref Interrupts);
        _running?.TrySetResult(GdbStopEvent.Interrupted(Registers.Keys.Max()));
        return Task.CompletedTask;
    }

    public Task<GdbBreakpointResult> InsertBreakpointAsync(GdbBreakpointType type, ulong address, int kind, CancellationToken ct)
    {
        Calls.Enqueue($"insert {type} {address:x} {kind}");
        if (type >= GdbBreakpointType.WriteWatch && !SupportsWatchpoints) return Task.FromResult(GdbBreakpointResult.Unsupported);
        Breakpoints[address] = type;
        return Task.FromResult(GdbBreakpointResult.Ok);
    }

    public Task<GdbBreakpointResult> RemoveBreakpointAsync(GdbBreakpointType type, ulong address, int kind, CancellationToken ct)
    {
        Calls.Enqueue($"remove {type} {address:x} {kind}");
        return Task.FromResult(Breakpoints.TryRemove(address, out _) ? GdbBreakpointResult.Ok : GdbBreakpointResult.Error);
    }

    public Task DetachAsync(CancellationToken ct)
    {
        Calls.Enqueue("detach");
        Detached = true;
        return Task.CompletedTask;
    }

    public Task KillAsync(CancellationToken ct)
    {
        Calls.Enqueue("kill");
        Killed = true;
        return Task.CompletedTask;
    }
}

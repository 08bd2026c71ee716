namespace KvmActors.Gdb;

public enum GdbBreakpointResult
{
    Ok,
    /// <summary>This type of breakpoint is not implemented: the reply is empty and gdb falls back
    /// (for Z0, to writing int3 into memory itself).</summary>
    Unsupported,
    /// <summary>Implemented but could not be placed (e.g. all four debug registers in use).</summary>
    Error,
}

/// <summary>
/// What a <see cref="GdbSession"/> debugs: the seam the VM runtime implements over its vCPUs.
/// Threads are vCPUs, numbered vCPU index + 1 (gdb reserves 0 for "any" and -1 for "all").
/// All-stop: every vCPU is stopped whenever a method other than <see cref="ResumeAsync"/> /
/// <see cref="InterruptAsync"/> is called. Methods are asynchronous because the real target
/// answers from actors.
/// </summary>
public interface IGdbTarget
{
    /// <summary>Called once when gdb connects: stop every vCPU and say which stop to report for '?'.</summary>
    Task<GdbStopEvent> AttachAsync(CancellationToken cancellationToken);

    /// <summary>The live thread ids, ascending.</summary>
    Task<IReadOnlyList<int>> GetThreadsAsync(CancellationToken cancellationToken);

    Task<X86RegisterFile> ReadRegistersAsync(int threadId, CancellationToken cancellationToken);

    /// <summary>Returns false if the registers could not be set.</summary>
    Task<bool> WriteRegistersAsync(int threadId, X86RegisterFile registers, CancellationToken cancellationToken);

    /// <summary>
    /// Reads guest memory at an address as gdb sends it (the runtime decides how it maps to guest
    /// physical memory). May return fewer bytes than asked, if the range runs into unmapped
    /// memory; an empty result is an error reply.
    /// </summary>
    Task<byte[]> ReadMemoryAsync(int threadId, ulong address, int length, CancellationToken cancellationToken);

    /// <summary>Returns false if any byte could not be written.</summary>
    Task<bool> WriteMemoryAsync(int threadId, ulong address, ReadOnlyMemory<byte> data, CancellationToken cancellationToken);

    /// <summary>
    /// Resumes as <paramref name="actions"/> say (use <see cref="GdbResume.ActionFor"/> per thread;
    /// a thread no action names stays stopped) and completes when the target stops again, with
    /// every vCPU stopped (all-stop) and the stop naming the thread that caused it.
    /// </summary>
    Task<GdbStopEvent> ResumeAsync(IReadOnlyList<GdbResumeAction> actions, CancellationToken cancellationToken);

    /// <summary>gdb's Ctrl-C while running: stop; the pending <see cref="ResumeAsync"/> then
    /// completes, normally with <see cref="GdbStopEvent.Interrupted"/>.</summary>
    Task InterruptAsync(CancellationToken cancellationToken);

    Task<GdbBreakpointResult> InsertBreakpointAsync(GdbBreakpointType type, ulong address, int kind, CancellationToken cancellationToken);

    Task<GdbBreakpointResult> RemoveBreakpointAsync(GdbBreakpointType type, ulong address, int kind, CancellationToken cancellationToken);

    /// <summary>gdb leaves: remove every breakpoint and let the guest run on without the debugger.</summary>
    Task DetachAsync(CancellationToken cancellationToken);

    /// <summary>gdb kills the "process": end the VM.</summary>
    Task KillAsync(CancellationToken cancellationToken);

    /// <summary>Free text gdb shows in "info threads" next to the thread.</summary>
    Task<string> GetThreadExtraInfoAsync(int threadId, CancellationToken cancellationToken) =>
        Task.FromResult($"vCPU {threadId - 1}");
}

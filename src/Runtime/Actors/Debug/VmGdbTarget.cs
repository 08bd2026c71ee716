using System.Threading.Channels;
using Akka.Actor;
using KvmActors.Gdb;
using KvmActors.Runtime.Kvm;
using KvmActors.Runtime.Vm;
using KvmActors.Sdk;

namespace KvmActors.Runtime.Debug;

/// <summary>
/// The VM as gdb sees it (all-stop): threads are vCPUs (id = index + 1); stopping is the VM's pause (every vCPU
/// kicked out of KVM_RUN); registers and memory are read by the vCPU actors on their own threads; breakpoints
/// and watchpoints live in the four debug registers of every vCPU (KVM_SET_GUEST_DEBUG), because this KVM hands
/// int3 to the guest instead of exiting (shared/README.md), so Z0 takes a debug register too.
/// </summary>
public sealed class VmGdbTarget(IActorRef vm, int vcpuCount, ChannelReader<object> events, ChannelWriter<object> interrupts) : IGdbTarget
{
    private static readonly TimeSpan AskTimeout = TimeSpan.FromSeconds(10);
    private const ulong Dr6SingleStep = 1UL << 14;
    private const ulong RflagsTrap = 1UL << 8;

    private sealed record Slot(GdbBreakpointType Type, ulong Address, int Length);
    private readonly Slot?[] _slots = new Slot?[4];
    private int _lastThread = 1;

    /// <summary>Gdb's Ctrl-C, queued with the VM's events so the pending resume sees it in order.</summary>
    private sealed record Interrupt;

    /// <summary>The register layout to offer gdb: the mode vCPU 0 is in now.</summary>
    public async Task<X86Mode> GuestModeAsync(CancellationToken ct)
    {
        await PauseAsync(ct);
        var state = await StateAsync(1, ct);
        if ((state.Sregs.Efer & (1UL << 10)) != 0) return X86Mode.Long64;  // EFER.LMA
        return (state.Sregs.Cr0 & 1) != 0 ? X86Mode.Protected32 : X86Mode.Real16;
    }

    public async Task<GdbStopEvent> AttachAsync(CancellationToken ct)
    {
        await PauseAsync(ct);
        while (events.TryRead(out var stale) && stale is not VmEndingForDebugger) { }
        return GdbStopEvent.Stepped(_lastThread);
    }

    public Task<IReadOnlyList<int>> GetThreadsAsync(CancellationToken ct) =>
        Task.FromResult<IReadOnlyList<int>>(Enumerable.Range(1, vcpuCount).ToList());

    public async Task<X86RegisterFile> ReadRegistersAsync(int threadId, CancellationToken ct)
    {
        var s = await StateAsync(threadId, ct);
        var (r, sr) = (s.Regs, s.Sregs);
        return new X86RegisterFile
        {
            Rax = r.Rax, Rbx = r.Rbx, Rcx = r.Rcx, Rdx = r.Rdx, Rsi = r.Rsi, Rdi = r.Rdi, Rbp = r.Rbp, Rsp = r.Rsp,
            R8 = r.R8, R9 = r.R9, R10 = r.R10, R11 = r.R11, R12 = r.R12, R13 = r.R13, R14 = r.R14, R15 = r.R15,
            Rip = r.Rip, Rflags = r.Rflags,
            Cs = sr.Cs.Selector, Ss = sr.Ss.Selector, Ds = sr.Ds.Selector, Es = sr.Es.Selector, Fs = sr.Fs.Selector, Gs = sr.Gs.Selector,
            FsBase = sr.Fs.Base, GsBase = sr.Gs.Base,
            Cr0 = sr.Cr0, Cr2 = sr.Cr2, Cr3 = sr.Cr3, Cr4 = sr.Cr4, Cr8 = sr.Cr8, Efer = sr.Efer,
        };
    }

    /// <summary>The general registers, RIP and RFLAGS are written; segment and control registers are not (a selector
    /// written without its descriptor would lie to the guest), which is what gdb users change in practice.</summary>
    public async Task<bool> WriteRegistersAsync(int threadId, X86RegisterFile f, CancellationToken ct)
    {
        var regs = new KvmRegs
        {
            Rax = f.Rax, Rbx = f.Rbx, Rcx = f.Rcx, Rdx = f.Rdx, Rsi = f.Rsi, Rdi = f.Rdi, Rbp = f.Rbp, Rsp = f.Rsp,
            R8 = f.R8, R9 = f.R9, R10 = f.R10, R11 = f.R11, R12 = f.R12, R13 = f.R13, R14 = f.R14, R15 = f.R15,
            Rip = f.Rip, Rflags = f.Rflags | 2, // bit 1 is reserved, always set
        };
        var done = await AskVcpu<DebugDone>(threadId, new DebugWriteRegisters(regs), ct);
        return done.Error is null;
    }

    public async Task<byte[]> ReadMemoryAsync(int threadId, ulong address, int length, CancellationToken ct) =>
        (await AskVcpu<DebugMemoryRead>(Valid(threadId), new DebugReadMemory(address, length), ct)).Bytes;

    public async Task<bool> WriteMemoryAsync(int threadId, ulong address, ReadOnlyMemory<byte> data, CancellationToken ct) =>
        (await AskVcpu<DebugDone>(Valid(threadId), new DebugWriteMemory(address, data.ToArray()), ct)).Error is null;

    public async Task<GdbStopEvent> ResumeAsync(IReadOnlyList<GdbResumeAction> actions, CancellationToken ct)
    {
        // Write watchpoints this KVM does not trap are kept by single-stepping the resumed vCPUs and comparing
        // the watched bytes after every instruction (slow, but what gdb itself would do, and transparent to it).
        var watched = SoftwareWatches().ToList();
        var before = new List<byte[]>();
        foreach (var w in watched) before.Add(await ReadMemoryAsync(1, w.Address, w.Length, ct));
        var run = new List<int>();
        var steppers = new HashSet<int>();
        for (var t = 1; t <= vcpuCount; t++)
        {
            var action = GdbResume.ActionFor(actions, t);
            if (action is null || action.Kind == GdbResumeKind.Stop) continue;
            var step = action.Kind == GdbResumeKind.Step;
            if (await StepOverBreakpointAsync(t, ct) && step)
            {
                // Stepping off a breakpoint was the step asked for.
                await PauseAsync(ct);
                return GdbStopEvent.Stepped(_lastThread = t);
            }
            await ConfigureAsync(t, step || watched.Count > 0, withBreakpoints: true, ct);
            if (step) steppers.Add(t);
            run.Add(t);
        }
        if (run.Count == 0) return GdbStopEvent.Stepped(_lastThread);
        await ResumeAsync(run, ct);
        while (true)
        {
            var (stop, stopped) = await NextStopAsync(ct);
            if (stopped is { } s && watched.Count > 0 && stop.Kind == GdbStopKind.Signal && stop.Signal == GdbSignals.Trap)
            {
                var t = s.VcpuId + 1;
                var hit = await ChangedWatchAsync(t, watched, before, ct);
                if (hit is { } w) stop = GdbStopEvent.Watchpoint(t, w.Type, w.Address);
                else if (!steppers.Contains(t))
                {
                    await ResumeAsync([t], ct); // nothing watched changed: on to the next instruction
                    continue;
                }
            }
            await PauseAsync(ct); // all-stop: the others stop too
            return stop;
        }
    }

    private IEnumerable<Slot> SoftwareWatches() => KvmDebugProbe.DataBreakpointsTrap
        ? []
        : _slots.OfType<Slot>().Where(s => s.Type == GdbBreakpointType.WriteWatch);

    private async Task<Slot?> ChangedWatchAsync(int t, List<Slot> watched, List<byte[]> before, CancellationToken ct)
    {
        for (var i = 0; i < watched.Count; i++)
        {
            var now = await ReadMemoryAsync(t, watched[i].Address, watched[i].Length, ct);
            if (!now.AsSpan().SequenceEqual(before[i])) return watched[i];
        }
        return null;
    }

    public Task InterruptAsync(CancellationToken ct) => interrupts.WriteAsync(new Interrupt(), ct).AsTask();

    public async Task<GdbBreakpointResult> InsertBreakpointAsync(GdbBreakpointType type, ulong address, int kind, CancellationToken ct)
    {
        // x86 debug registers watch writes (RW=01) or reads and writes (RW=11), never reads alone.
        if (type == GdbBreakpointType.ReadWatch) return GdbBreakpointResult.Unsupported;
        // Where this KVM does not trap data breakpoints, gdb's own (single-stepping) watchpoints are the honest answer.
        // Where this KVM does not trap data breakpoints, writes are watched by single-stepping (ResumeAsync); reads cannot be.
        if (type == GdbBreakpointType.AccessWatch && !KvmDebugProbe.DataBreakpointsTrap) return GdbBreakpointResult.Unsupported;
        var length = type is GdbBreakpointType.Software or GdbBreakpointType.Hardware ? 1 : kind;
        if (length is not (1 or 2 or 4 or 8) || address % (ulong)length != 0) return GdbBreakpointResult.Error;
        if (Array.Exists(_slots, s => s == new Slot(type, address, length))) return GdbBreakpointResult.Ok;
        var free = Array.IndexOf(_slots, null);
        if (free < 0) return GdbBreakpointResult.Error; // all four debug registers are in use
        _slots[free] = new Slot(type, address, length);
        await Task.CompletedTask.WaitAsync(ct);
        return GdbBreakpointResult.Ok;
    }

    public Task<GdbBreakpointResult> RemoveBreakpointAsync(GdbBreakpointType type, ulong address, int kind, CancellationToken ct)
    {
        for (var i = 0; i < _slots.Length; i++)
            if (_slots[i] is { } s && s.Type == type && s.Address == address) _slots[i] = null;
        return Task.FromResult(GdbBreakpointResult.Ok);
    }

    public async Task DetachAsync(CancellationToken ct)
    {
        Array.Clear(_slots);
        for (var t = 1; t <= vcpuCount; t++)
            await AskVcpu<DebugDone>(t, new DebugConfigure(GuestDebugFlags.None, [], 0), ct);
        await ResumeAsync(Enumerable.Range(1, vcpuCount).ToList(), ct);
    }

    public Task KillAsync(CancellationToken ct)
    {
        vm.Tell(new StopVm("killed by the debugger"));
        return Task.CompletedTask;
    }

    public async Task<string> GetThreadExtraInfoAsync(int threadId, CancellationToken ct)
    {
        var s = (await StateAsync(threadId, ct)).Sregs;
        var mode = (s.Efer & (1UL << 10)) != 0 ? "long mode" : (s.Cr0 & 1) != 0 ? "protected mode" : "real mode";
        return $"vCPU {threadId - 1}, {mode}";
    }

    // ---- the parts ----

    /// <summary>Waits for the stop the resumed vCPUs (or gdb's Ctrl-C, or the VM's end) cause, and names it.</summary>
    private async Task<(GdbStopEvent Stop, VcpuDebugStopped? Vcpu)> NextStopAsync(CancellationToken ct)
    {
        while (true)
        {
            switch (await events.ReadAsync(ct))
            {
                case Interrupt:
                    return (GdbStopEvent.Interrupted(_lastThread), null);
                case VmEndingForDebugger end:
                    return (end.Reason == VmEndReason.GuestFailure ? GdbStopEvent.Terminated(GdbSignals.Kill) : GdbStopEvent.Exited(end.ExitStatus), null);
                case VcpuDebugStopped s:
                    var t = _lastThread = s.VcpuId + 1;
                    for (var i = 0; i < 4; i++)
                    {
                        if ((s.Dr6 & (1UL << i)) == 0 || _slots[i] is not { } slot) continue;
                        return (slot.Type switch
                        {
                            GdbBreakpointType.Software => GdbStopEvent.SoftwareBreakpoint(t),
                            GdbBreakpointType.Hardware => GdbStopEvent.HardwareBreakpoint(t),
                            _ => GdbStopEvent.Watchpoint(t, slot.Type, slot.Address),
                        }, s);
                    }
                    return (GdbStopEvent.Stepped(t), s);
            }
        }
    }

    /// <summary>
    /// A thread that sits on one of our execute breakpoints would hit it again at once: step it one instruction
    /// with no breakpoints set first. Returns whether it did.
    /// </summary>
    private async Task<bool> StepOverBreakpointAsync(int t, CancellationToken ct)
    {
        var rip = (await StateAsync(t, ct)).Regs.Rip;
        if (!Array.Exists(_slots, s => s is { Type: GdbBreakpointType.Software or GdbBreakpointType.Hardware } && s.Address == rip)) return false;
        await ConfigureAsync(t, step: true, withBreakpoints: false, ct);
        await ResumeAsync([t], ct);
        while (await events.ReadAsync(ct) is not VcpuDebugStopped { } s || s.VcpuId != t - 1) { }
        return true;
    }

    private Task ConfigureAsync(int t, bool step, bool withBreakpoints, CancellationToken ct)
    {
        var flags = GuestDebugFlags.Enable | (step ? GuestDebugFlags.SingleStep : 0);
        ulong dr7 = 0;
        var addresses = new ulong[4];
        if (withBreakpoints)
        {
            for (var i = 0; i < 4; i++)
            {
                if (_slots[i] is not { } s || (s.Type == GdbBreakpointType.WriteWatch && !KvmDebugProbe.DataBreakpointsTrap)) continue;
                addresses[i] = s.Address;
                var rw = s.Type switch { GdbBreakpointType.WriteWatch => 1UL, GdbBreakpointType.AccessWatch => 3UL, _ => 0UL };
                var len = s.Length switch { 2 => 1UL, 4 => 3UL, 8 => 2UL, _ => 0UL };
                dr7 |= (1UL << (2 * i)) | (rw << (16 + 4 * i)) | (len << (18 + 4 * i));
            }
            if (dr7 != 0) flags |= GuestDebugFlags.UseHardwareBreakpoints;
        }
        return AskVcpu<DebugDone>(t, new DebugConfigure(flags, addresses, dr7), ct);
    }

    private Task PauseAsync(CancellationToken ct) => vm.Ask<VmPaused>(new PauseVm(), AskTimeout, ct);

    private Task ResumeAsync(IReadOnlyCollection<int> threads, CancellationToken ct) =>
        vm.Ask<VmResumed>(new ResumeVcpus(threads.Select(t => t - 1).ToList()), AskTimeout, ct);

    private Task<DebugStateRead> StateAsync(int t, CancellationToken ct) => AskVcpu<DebugStateRead>(t, new DebugReadState(), ct);

    private async Task<T> AskVcpu<T>(int threadId, object request, CancellationToken ct)
    {
        var answer = await vm.Ask<object>(new DebugVcpuRequest(Valid(threadId) - 1, request), AskTimeout, ct);
        return answer switch
        {
            T t => t,
            DebugDone { Error: { } e } => throw new IOException($"vCPU {threadId - 1}: {e}"),
            _ => throw new IOException($"vCPU {threadId - 1}: unexpected answer {answer.GetType().Name}"),
        };
    }

    private int Valid(int threadId) => threadId >= 1 && threadId <= vcpuCount ? threadId : 1;
}

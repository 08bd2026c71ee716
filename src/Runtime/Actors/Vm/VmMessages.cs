using KvmActors.Runtime.Kvm;

namespace KvmActors.Runtime.Vm;


/// <summary>Registers, exit and instruction of a vCPU at a guest failure.</summary>
public sealed record GuestFailureInfo(
    int VcpuId,
    string ExitReason,
    string Explanation,
    KvmRegs Registers,
    KvmSregs SpecialRegisters,
    string FaultingInstruction)
{
    public string Describe() => $"vcpu {VcpuId}: {ExitReason}: {Explanation}{Environment.NewLine}" +
                                $"  instruction: {FaultingInstruction}{Environment.NewLine}" +
                                RegisterDump.Format(Registers, SpecialRegisters);
}

/// <summary>What one vCPU did during the VM's life (collected when it stops).</summary>
public sealed record VcpuSummary(
    int VcpuId,
    string ThreadName,
    int NativeThreadId,
    int DistinctThreadsSeen,
    long Exits,
    bool Halted,
    KvmRegs? FinalRegisters,
    IReadOnlyDictionary<string, long> ExitsByReason,
    IReadOnlyDictionary<ushort, long> ExitsByPort,
    int Restarts = 0,
    long UnmappedAccesses = 0,
    KvmSregs? FinalSpecialRegisters = null);

/// <summary>Guest memory read when the VM ended, for the end report (<c>run --report-memory</c>).</summary>
public sealed record MemoryDump(ulong Address, byte[] Bytes);

/// <summary>A child actor the VM restarted (or stopped) after it failed.</summary>
public sealed record ActorFailure(string Actor, string Exception, string Message, bool Restarted, DateTimeOffset At);

/// <summary>Sent by the VM actor to whoever started it, after every resource of the VM has been released.</summary>
public sealed record VmEnded(
    string VmName,
    VmEndReason Reason,
    string Detail,
    int ExitStatus,
    GuestFailureInfo? Failure,
    IReadOnlyList<VcpuSummary> Vcpus,
    IReadOnlyList<ActorFailure>? Failures = null)
{
    /// <summary>Every child failure during the VM's life, restarted or not.</summary>
    public IReadOnlyList<ActorFailure> ActorFailures => Failures ?? [];

    /// <summary>The ranges <see cref="Config.GuestSpec.ReportMemory"/> asked for, read after the vCPUs stopped.</summary>
    public IReadOnlyList<MemoryDump> MemoryDumps { get; init; } = [];

    public override string ToString() => $"VM '{VmName}' ended: {Reason} ({Detail}), exit status {ExitStatus}";
}

/// <summary>Ask a running VM how far its vCPUs are; answered with <see cref="VmStatus"/>.</summary>
public sealed record GetVmStatus;

/// <summary>Each vCPU's exits so far and its thread, while the VM runs (the end report has the full summary).</summary>
public sealed record VmStatus(IReadOnlyList<VcpuLiveStatus> Vcpus);

public sealed record VcpuLiveStatus(int VcpuId, long Exits, int NativeThreadId, string ThreadName);

/// <summary>Ask a VM to stop; it ends with <see cref="VmEndReason.StoppedOnRequest"/>.</summary>
public sealed record StopVm(string Why = "stop requested");

/// <summary>Stop running the guest (every vCPU out of KVM_RUN) until <see cref="ResumeVm"/>; answered with <see cref="VmPaused"/>.</summary>
public sealed record PauseVm;

/// <summary>Every vCPU has stopped running the guest.</summary>
public sealed record VmPaused(string VmName);

/// <summary>Run the guest again after a pause; answered with <see cref="VmResumed"/>.</summary>
public sealed record ResumeVm;

public sealed record VmResumed(string VmName);

/// <summary>
/// Save the running (or paused) VM into <paramref name="Directory"/> (new or empty): it is paused, its state and
/// memory written, then resumed unless <paramref name="Resume"/> is false (or it was paused before). Answered with
/// <see cref="VmSnapshotted"/> or <see cref="VmSnapshotFailed"/>.
/// </summary>
public sealed record SnapshotVm(string Directory, bool Resume = true);

/// <summary>The snapshot is complete on disk. <paramref name="FreshDevices"/>: devices that keep no state (restored fresh).</summary>
public sealed record VmSnapshotted(string VmName, string Directory, Snapshot.SnapshotStats Stats, TimeSpan Elapsed, IReadOnlyList<string> FreshDevices);

/// <summary>No snapshot was taken (or it is incomplete on disk, without SHA256SUMS): why.</summary>
public sealed record VmSnapshotFailed(string VmName, string Reason);

/// <summary>Answered with <see cref="VmStarted"/> once every device has started (a restored one has taken its state) and every vCPU runs.</summary>
public sealed record AwaitVmStarted;

public sealed record VmStarted(string VmName);

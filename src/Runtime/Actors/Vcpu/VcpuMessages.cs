using KvmActors.Runtime.Bus;
using KvmActors.Sdk;
using KvmActors.Runtime.Vm;

namespace KvmActors.Runtime.Vcpu;

/// <summary>The vCPU actor's thread is up: the VM keeps the native thread id to kick it out of KVM_RUN.</summary>
/// <param name="ThreadExited">Completes when the vCPU's thread has ended (null when its dispatcher does not say:
/// not an <see cref="Dispatch.OwnThreadDispatcher"/>).</param>
public sealed record VcpuStarted(int VcpuId, int NativeThreadId, string ThreadName, Task? ThreadExited = null);

/// <summary>The guest executed HLT on this vCPU (sent to the VM, whose <see cref="HaltPolicy"/> decides).</summary>
public sealed record VcpuHalted(int VcpuId);

/// <summary>The guest did something that cannot go on (sent to the VM).</summary>
public sealed record VcpuGuestFailed(GuestFailureInfo Failure);

/// <summary>
/// First access of this vCPU to a page (MMIO) or port block no device claims, sent to the VM, which logs it once
/// per page; <paramref name="LogFull"/>: the vCPU's bounded log is full, and further new pages are only counted.
/// </summary>
public sealed record UnmappedAccess(int VcpuId, AddressSpace Space, ulong Address, int Size, bool IsWrite, bool LogFull = false);

/// <summary>The VM asks the vCPU to stop; it answers <see cref="VcpuStopped"/> and stops.</summary>
public sealed record StopVcpu(string Why);

/// <summary>The VM asks the vCPU to stop running the guest until <see cref="ResumeVcpu"/>.</summary>
public sealed record PauseVcpu;

/// <summary>The vCPU is out of KVM_RUN and will not enter it until resumed.</summary>
public sealed record VcpuPaused(int VcpuId);

/// <summary>Go on running the guest after a <see cref="PauseVcpu"/>.</summary>
public sealed record ResumeVcpu;

/// <summary>
/// The VM asks a paused vCPU to finish the exit it last handled (a read still out is awaited first), so its state
/// can be read at an instruction boundary; answered with <see cref="VcpuExitCompleted"/>.
/// </summary>
public sealed record CompleteVcpuExit;

/// <summary>The vCPU is at an instruction boundary (or, with <paramref name="Error"/>, could not get there).</summary>
public sealed record VcpuExitCompleted(int VcpuId, bool Halted, string? Error);

/// <summary>A vCPU's last word: what it did.</summary>
public sealed record VcpuStopped(VcpuSummary Summary);

/// <summary>Self-message: enter KVM_RUN once. Between two of these the mailbox is served.</summary>
internal sealed class RunGuest
{
    public static readonly RunGuest Instance = new();
    private RunGuest() { }
}

/// <summary>
/// The VM resumes from S3: the paused vCPU drops what it was doing and starts again as after a reset, in real mode
/// at <paramref name="RealModeEntry"/> (the BSP) or, with null, waiting for INIT/SIPI (an AP). It stays paused until
/// <see cref="ResumeVcpu"/>; a failure to set the state is a guest failure (the VM ends naming it).
/// </summary>
public sealed record ResetVcpu(ulong? RealModeEntry);

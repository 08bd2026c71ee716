using KvmActors.Runtime.Kvm;
using KvmActors.Sdk;

namespace KvmActors.Runtime.Debug;

// Messages between the debugger (DebuggerActor / VmGdbTarget), the VM actor and the vCPU actors. The vCPU
// handles the Debug* requests on its own thread, between two KVM_RUNs, only while it is paused (all-stop).

/// <summary>A vCPU took KVM_EXIT_DEBUG (a single step or a debug-register hit) and paused itself; sent to the VM, which tells the debugger.</summary>
public sealed record VcpuDebugStopped(int VcpuId, ulong Dr6, ulong Pc);

/// <summary>The debugger asks the VM to hand <paramref name="Request"/> to one vCPU actor (the answer goes straight back).</summary>
public sealed record DebugVcpuRequest(int VcpuId, object Request);

/// <summary>Run only these (paused) vCPUs again; the others stay paused. Answered with <see cref="Vm.VmResumed"/>.</summary>
public sealed record ResumeVcpus(IReadOnlyCollection<int> VcpuIds);

/// <summary>The VM is ending: the debugger tells gdb the "process" exited, and stops.</summary>
public sealed record VmEndingForDebugger(VmEndReason Reason, int ExitStatus);

/// <summary>Read the vCPU's registers. Answered with <see cref="DebugStateRead"/>.</summary>
public sealed record DebugReadState;

public sealed record DebugStateRead(KvmRegs Regs, KvmSregs Sregs);

/// <summary>Set the general registers, RIP and RFLAGS. Answered with <see cref="DebugDone"/>.</summary>
public sealed record DebugWriteRegisters(KvmRegs Regs);

/// <summary>Read guest-virtual memory as this vCPU sees it (KVM_TRANSLATE page by page). Answered with <see cref="DebugMemoryRead"/>.</summary>
public sealed record DebugReadMemory(ulong Address, int Length);

/// <summary>The bytes read: fewer than asked where the range runs into unmapped or untranslatable memory.</summary>
public sealed record DebugMemoryRead(byte[] Bytes);

/// <summary>Write guest-virtual memory as this vCPU sees it. Answered with <see cref="DebugDone"/>.</summary>
public sealed record DebugWriteMemory(ulong Address, byte[] Bytes);

/// <summary>KVM_SET_GUEST_DEBUG for this vCPU. Answered with <see cref="DebugDone"/>.</summary>
public sealed record DebugConfigure(GuestDebugFlags Flags, ulong[] Breakpoints, ulong Dr7);

/// <summary>A debug request's answer: <paramref name="Error"/> is null when it was done.</summary>
public sealed record DebugDone(string? Error = null);

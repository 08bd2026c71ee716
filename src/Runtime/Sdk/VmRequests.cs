namespace KvmActors.Sdk;

/// <summary>Why a VM ended.</summary>
public enum VmEndReason
{
    /// <summary>The halt controller's policy was met (e.g. every vCPU executed HLT).</summary>
    Halted,
    /// <summary>The guest asked to end with a status of its own (e.g. through a debug-exit port).</summary>
    GuestExit,
    /// <summary>The guest asked for a reset (e.g. 0xFE to the keyboard controller).</summary>
    ResetRequested,
    /// <summary>The guest did something that cannot continue: triple fault, failed entry, emulation failure, strict-mode access.</summary>
    GuestFailure,
    /// <summary>Someone outside the guest asked the VM to stop.</summary>
    StoppedOnRequest,
    /// <summary>The host side failed: a setup error, or an actor that failed beyond its supervision policy.</summary>
    Fault,
    /// <summary>The VM was migrated: it runs on in another host, and this copy ended.</summary>
    Migrated,
}

/// <summary>A device (or the halt controller) asks the VM to end.</summary>
public sealed record RequestVmEnd(VmEndReason Reason, string Detail, int ExitStatus = 0);

/// <summary>A device drives one of its interrupt lines.</summary>
public sealed record SetIrqLine(int Line, bool Level, string DeviceName);

/// <summary>
/// A device asks the VM to suspend (ACPI S3 through PM1 control): no vCPU runs the guest until the same device asks
/// for <see cref="RequestVmResume"/>; RAM and devices keep their state. Meanwhile the VM hands each
/// <see cref="WakeEvent"/> to that device, which decides whether it wakes the machine.
/// </summary>
public sealed record RequestVmSuspend(string Detail);

/// <summary>The VM to the device that asked for <see cref="RequestVmSuspend"/>: no vCPU runs the guest any more.</summary>
public sealed record VmSuspended;

/// <summary>
/// A device saw something that wakes a sleeping PC (the RTC alarm): <paramref name="Source"/> names it ("rtc"). A
/// running VM drops it; a suspended one passes it to the device that suspended it.
/// </summary>
public sealed record WakeEvent(string Source);

/// <summary>
/// The device that suspended the VM wakes it: the vCPUs start again as after a reset, vCPU 0 in real mode at the
/// FACS firmware waking vector (as firmware resuming from S3 jumps there), the others waiting for INIT/SIPI.
/// </summary>
public sealed record RequestVmResume(string Detail);

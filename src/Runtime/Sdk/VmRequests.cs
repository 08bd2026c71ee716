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

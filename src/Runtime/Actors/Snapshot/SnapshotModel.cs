using KvmActors.Sdk;

namespace KvmActors.Runtime.Snapshot;

/// <summary>
/// The state file of a snapshot (<c>state.json</c>), beside one memory file per region and <c>SHA256SUMS</c>.
/// The kernel's own structs are kept as the KVM API defines them (base64 of the struct bytes); the rest is
/// plain JSON. <see cref="FormatVersion"/> is the major format: a reader refuses any other.
/// </summary>
public sealed record SnapshotState
{
    public const string FormatName = "kvmactors-snapshot";
    public const int CurrentFormatVersion = 1;

    public string Format { get; init; } = FormatName;
    public int FormatVersion { get; init; } = CurrentFormatVersion;
    /// <summary>The KvmActors version that wrote it (informational).</summary>
    public required string WrittenBy { get; init; }
    public required DateTimeOffset TakenAt { get; init; }
    public required string VmName { get; init; }
    /// <summary>The config the guest was bound from, so the restored VM has the same devices and settings.</summary>
    public required SnapshotGuest Guest { get; init; }
    public required bool Irqchip { get; init; }
    public required IReadOnlyList<SnapshotRegion> Memory { get; init; }
    /// <summary>By vCPU index, each with the KVM state in the order the KVM API reads it.</summary>
    public required IReadOnlyList<SnapshotVcpu> Vcpus { get; init; }
    /// <summary>PIC, IOAPIC, PIT and KVM clock.</summary>
    public required VmSavedState Vm { get; init; }
    public required IReadOnlyList<SnapshotDevice> Devices { get; init; }
}

public sealed record SnapshotGuest(string SourceFile, string BaseDirectory, string Config);

/// <summary>One guest memory region and the file holding it (sparse: pages the guest never wrote are holes).</summary>
public sealed record SnapshotRegion(string Name, ulong GuestAddress, ulong Size, bool ReadOnly, string File);

/// <summary>A vCPU: KVM's state of it, and whether the runtime had parked it after HLT (no irqchip).</summary>
public sealed record SnapshotVcpu(bool Halted, VcpuSavedState State);

/// <summary>A device's saved state; <see cref="State"/> null: the device keeps none and is restored fresh.</summary>
public sealed record SnapshotDevice(string Name, string Type, DeviceState? State)
{
    public string Restore => State is null ? "fresh" : "saved-state";
}

/// <summary>What a snapshot cost: bytes written, disk blocks used (sparse files), time taken.</summary>
public sealed record SnapshotStats(long MemoryBytes, long DiskBytes, long StateBytes, TimeSpan PauseTime, TimeSpan WriteTime);

/// <summary>A snapshot directory that cannot be used (missing, corrupt, another format): a config-class error, exit 2.</summary>
public sealed class SnapshotException(string message, Exception? inner = null) : KvmActorsException(ErrorKind.Config, message, inner);

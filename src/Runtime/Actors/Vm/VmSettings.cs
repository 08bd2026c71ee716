using KvmActors.Runtime.Devices;

namespace KvmActors.Runtime.Vm;

/// <summary>
/// Runtime settings for VMs, from the <c>kvmactors</c> block. Bound and range-checked once, at start, by
/// <c>KvmActors.Runtime.Config.RuntimeSettingsBinder</c> (defaults in hocon/reference.conf).
/// </summary>
public sealed record VmSettings(
    string KvmDevice,
    TimeSpan StopTimeout,
    TimeSpan KickInterval,
    int KickSignal,
    DeviceRegistry Registry,
    int ExitsPerMessage,
    bool ReadSnapshots,
    int VcpuThreadNice = 0,
    TimeSpan? CaptureTimeout = null)
{
    /// <summary>kvmactors.devices.read-snapshot-wait: how long an IN waits for writes in flight before a round trip.</summary>
    public TimeSpan ReadSnapshotWait { get; init; }

    /// <summary>kvmactors.vm.capture-timeout: how long a snapshot (or a migration's last round) may take to collect the VM's state; unset: stop-timeout.</summary>
    public TimeSpan Capture => CaptureTimeout ?? StopTimeout;
}

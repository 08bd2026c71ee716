using System.Reflection;
using KvmActors.Devices.Uart16550;

namespace KvmActors.Host;

/// <summary>The device assemblies this host ships: handed to the runtime's registry (which names none itself).</summary>
internal static class BuiltInDevices
{
    /// <summary>
    /// Only KvmActors.Devices: the host's own assembly has no [DeviceType] class (the bench's clock device is named by
    /// its assembly-qualified type), and scanning it loaded every type of serve and the fleet, with Akka.Cluster.Sharding,
    /// DistributedData and ASP.NET, about 10 ms of each <c>kvmactors run</c>'s start-up.
    /// </summary>
    public static readonly IReadOnlyList<Assembly> Assemblies =
    [
        typeof(Uart16550Device).Assembly,   // KvmActors.Devices
    ];
}

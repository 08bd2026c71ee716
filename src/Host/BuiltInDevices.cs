using System.Reflection;
using KvmActors.Devices.Uart16550;

namespace KvmActors.Host;

/// <summary>The device assemblies this host ships: handed to the runtime's registry (which names none itself).</summary>
internal static class BuiltInDevices
{
    public static readonly IReadOnlyList<Assembly> Assemblies =
    [
        typeof(Uart16550Device).Assembly,   // KvmActors.Devices
        typeof(BuiltInDevices).Assembly,    // the host's own (the bench's clock device)
    ];
}

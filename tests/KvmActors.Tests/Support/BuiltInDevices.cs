using System.Reflection;
using KvmActors.Devices.Uart16550;

namespace KvmActors.Tests.Support;

/// <summary>The device assemblies the tests hand the runtime, as the host does (the runtime names none itself).</summary>
public static class BuiltInDevices
{
    public static readonly IReadOnlyList<Assembly> Assemblies = [typeof(Uart16550Device).Assembly];
}

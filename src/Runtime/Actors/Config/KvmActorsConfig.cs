using System.Reflection;
using Akka.Configuration;

namespace KvmActors.Runtime.Config;

/// <summary>The runtime's HOCON defaults (hocon/reference.conf, embedded in this assembly).</summary>
public static class KvmActorsConfig
{
    private static readonly Lazy<Akka.Configuration.Config> ReferenceConfig = new(() =>
    {
        using var stream = Assembly.GetExecutingAssembly().GetManifestResourceStream("KvmActors.reference.conf")
                           ?? throw new InvalidOperationException("reference.conf is not embedded in KvmActors.Runtime");
        using var reader = new StreamReader(stream);
        return ConfigurationFactory.ParseString(reader.ReadToEnd());
    });

    /// <summary>Every default: the kvmactors block (dispatchers, devices, guest defaults).</summary>
    public static Akka.Configuration.Config Reference => ReferenceConfig.Value;

    /// <summary>An actor-system config: <paramref name="overrides"/> first, then our defaults.</summary>
    public static Akka.Configuration.Config WithDefaults(Akka.Configuration.Config? overrides = null) =>
        overrides is null ? Reference : overrides.WithFallback(Reference);

    /// <summary>The dispatcher every vCPU actor runs on: one thread per actor (<see cref="Dispatch.OwnThreadDispatcher"/>).</summary>
    public const string VcpuDispatcherId = "kvmactors.vcpu-dispatcher";

    /// <summary>The dispatcher every VM actor runs on: one thread per VM, for its blocking KVM set-up and release.</summary>
    public const string VmDispatcherId = "kvmactors.vm-dispatcher";
}

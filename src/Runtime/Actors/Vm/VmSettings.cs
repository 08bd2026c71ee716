using System.Reflection;
using KvmActors.Runtime.Config;
using KvmActors.Runtime.Devices;

namespace KvmActors.Runtime.Vm;

/// <summary>Runtime settings for VMs, bound from the <c>kvmactors</c> block.</summary>
public sealed record VmSettings(
    string KvmDevice,
    TimeSpan StopTimeout,
    TimeSpan KickInterval,
    int KickSignal,
    DeviceRegistry Registry,
    int ExitsPerMessage = 256,
    bool ReadSnapshots = true)
{
    private static readonly Lazy<VmSettings> Defaults = new(() => From(KvmActorsConfig.Reference, []));
    /// <summary>The reference settings with no built-in devices (the host hands those to <see cref="From"/>).</summary>
    public static VmSettings Default => Defaults.Value;

    /// <param name="builtInDevices">The host's device assemblies: the runtime names none itself.</param>
    public static VmSettings From(Akka.Configuration.Config config, IEnumerable<Assembly> builtInDevices)
    {
        var c = config.WithFallback(KvmActorsConfig.Reference).GetConfig("kvmactors");
        // The runtime's own assembly too, for the devices it defines itself (none is named here).
        var registry = new DeviceRegistry(builtInDevices.Append(typeof(VmSettings).Assembly),
            c.GetStringList("devices.assemblies"), c.GetStringList("devices.plugin-directories"));
        return new VmSettings(c.GetString("kvm-device"), c.GetTimeSpan("vm.stop-timeout"), c.GetTimeSpan("vm.kick-interval"),
            c.GetInt("vm.kick-signal"), registry, c.GetInt("vcpu.exits-per-message"), c.GetBoolean("devices.read-snapshots"));
    }
}

using System.Runtime.InteropServices;
using KvmActors.Runtime.Devices;
using KvmActors.Runtime.Vm;

namespace KvmActors.Runtime.Config;

/// <summary>
/// Binds and range-checks the runtime settings (the <c>kvmactors</c> block: reference.conf, then a guest file's
/// <c>kvmactors { }</c> block and <c>--set kvmactors....</c>) once, at start. Every default lives in
/// hocon/reference.conf; a bad value is a ConfigException naming the key.
/// </summary>
public static class RuntimeSettingsBinder
{
    private static readonly Lazy<VmSettings> Defaults = new(() => Bind(KvmActorsConfig.Reference, "reference.conf", []));

    /// <summary>The settings of reference.conf alone, with no built-in devices (the host hands those to <see cref="Bind"/>).</summary>
    public static VmSettings Default => Defaults.Value;

    public static readonly TimeSpan MaxStopTimeout = TimeSpan.FromMinutes(10), MaxKickInterval = TimeSpan.FromSeconds(10);
    public const int MaxExitsPerMessage = 65536, MaxThroughput = 1 << 20;

    /// <summary>The VM settings of an actor system's config (anything it lacks comes from reference.conf).</summary>
    /// <param name="file">Named in errors: the guest file the <c>kvmactors</c> block came from.</param>
    /// <param name="builtInDevices">The host's device assemblies: the runtime names none itself.</param>
    public static VmSettings Bind(Akka.Configuration.Config merged, string file, IEnumerable<System.Reflection.Assembly> builtInDevices)
    {
        var withDefaults = ReferenceEquals(merged, KvmActorsConfig.Reference) ? merged : merged.WithFallback(KvmActorsConfig.Reference);
        var root = new ConfigSection(withDefaults, "", file, Environment.CurrentDirectory);
        var s = Read(root.GetSection("kvmactors"));
        return new VmSettings(s.KvmDevice, s.StopTimeout, s.KickInterval, s.KickSignal,
            new DeviceRegistry(builtInDevices, s.Assemblies, s.PluginDirectories), s.ExitsPerMessage, s.ReadSnapshots, s.VcpuThreadNice, s.CaptureTimeout)
        {
            ReadSnapshotWait = s.ReadSnapshotWait,
        };
    }

    /// <summary>Checks a <c>kvmactors</c> section (with reference.conf as its fallback) without loading any assembly.</summary>
    public static void Validate(ConfigSection kvmactors) => Read(kvmactors);

    private sealed record Values(string KvmDevice, TimeSpan StopTimeout, TimeSpan KickInterval, int KickSignal,
        IReadOnlyList<string> Assemblies, IReadOnlyList<string> PluginDirectories, int ExitsPerMessage, bool ReadSnapshots, int VcpuThreadNice,
        TimeSpan ReadSnapshotWait, TimeSpan CaptureTimeout);

    private static Values Read(ConfigSection k)
    {
        var kvm = k.GetString("kvm-device");
        if (kvm.Length == 0) throw k.Error("kvm-device", "empty (the KVM device to open, e.g. /dev/kvm)");
        Dispatcher(k.GetSection("vcpu-dispatcher"));
        Dispatcher(k.GetSection("vm-dispatcher"));
        Dispatcher(k.GetSection("device-dispatcher"));
        var vm = k.GetSection("vm");
        var stop = vm.GetDuration("stop-timeout", min: TimeSpan.FromMilliseconds(1), max: MaxStopTimeout);
        var kick = vm.GetDuration("kick-interval", min: TimeSpan.FromMilliseconds(1), max: MaxKickInterval);
        var capture = vm.GetDuration("capture-timeout", min: TimeSpan.FromMilliseconds(1), max: MaxStopTimeout);
        var (first, last) = OwnableRealTimeSignals();
        var signal = (int)vm.GetInteger("kick-signal", min: 0, max: 1024);
        if (signal < first || signal > last)
            throw vm.Error("kick-signal", $"{signal} is not a real-time signal the runtime can own ({first}..{last}: SIGRTMIN+1..SIGRTMAX; SIGRTMIN itself is .NET's)");
        var devices = k.GetSection("devices");
        var assemblies = devices.GetStringList("assemblies");
        var plugins = devices.GetStringList("plugin-directories");
        var snapshots = devices.GetBool("read-snapshots");
        var snapshotWait = devices.GetDuration("read-snapshot-wait", min: TimeSpan.Zero, max: TimeSpan.FromMilliseconds(1));
        var vcpu = k.GetSection("vcpu");
        var exits = (int)vcpu.GetInteger("exits-per-message", min: 1, max: MaxExitsPerMessage);
        var nice = (int)vcpu.GetInteger("thread-nice", min: 0, max: 19);
        return new Values(kvm, stop, kick, signal, assemblies, plugins, exits, snapshots, nice, snapshotWait, capture);
    }

    private static void Dispatcher(ConfigSection d)
    {
        var type = d.GetString("type");
        // Akka's built-in names, or a configurator type that must load (Akka would fail only when the first actor starts).
        if (type is not ("PinnedDispatcher" or "Dispatcher" or "ForkJoinDispatcher" or "TaskDispatcher" or "SynchronizedDispatcher")
            && Type.GetType(type, throwOnError: false) is null)
            throw d.Error("type", $"'{type}' is neither an Akka dispatcher type (PinnedDispatcher, Dispatcher, ...) nor a type that loads");
        d.GetInteger("throughput", min: 1, max: MaxThroughput);
    }

    /// <summary>
    /// Real-time signals a kick may use. glibc keeps the first two kernel RT signals (32, 33) for itself, so
    /// SIGRTMIN reads 34; the .NET runtime takes SIGRTMIN for its activation injection (thread suspension for
    /// the GC, INJECT_ACTIVATION_SIGNAL in CoreCLR's PAL) and uses no other RT signal. So SIGRTMIN+1..SIGRTMAX.
    /// </summary>
    public static (int First, int Last) OwnableRealTimeSignals()
    {
        try { return (SigRtMin() + 1, SigRtMax()); }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { return (35, 64); }
    }

    [DllImport("libc", EntryPoint = "__libc_current_sigrtmin")]
    private static extern int SigRtMin();

    [DllImport("libc", EntryPoint = "__libc_current_sigrtmax")]
    private static extern int SigRtMax();
}

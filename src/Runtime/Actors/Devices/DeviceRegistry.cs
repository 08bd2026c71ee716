using System.Reflection;
using Akka.Actor;

namespace KvmActors.Runtime.Devices;

/// <summary>
/// Finds device classes by the short name of their <see cref="DeviceTypeAttribute"/> or by
/// assembly-qualified type name. Searches the built-in device assemblies the host hands it (the runtime
/// names no device assembly itself), the extra assemblies named in <c>kvmactors.devices.assemblies</c>,
/// and every *.dll in <c>kvmactors.devices.plugin-directories</c>.
/// </summary>
public sealed class DeviceRegistry
{
    private readonly Dictionary<string, Type> _byName = new(StringComparer.Ordinal);
    private readonly List<Assembly> _assemblies = [];

    public IReadOnlyDictionary<string, Type> Types => _byName;

    /// <param name="builtIn">The host's own device assemblies (e.g. <c>typeof(Uart16550Device).Assembly</c>).</param>
    /// <param name="assemblyNames">Extra assemblies to load by name (<c>kvmactors.devices.assemblies</c>).</param>
    /// <param name="pluginDirectories">Folders whose *.dll are loaded as plug-ins.</param>
    public DeviceRegistry(IEnumerable<Assembly> builtIn, IEnumerable<string> assemblyNames, IEnumerable<string> pluginDirectories)
    {
        foreach (var asm in builtIn) Scan(asm);
        foreach (var name in assemblyNames)
        {
            Assembly asm;
            try { asm = Assembly.Load(name); }
            catch (Exception e) when (e is IOException or BadImageFormatException or ArgumentException)
            {
                throw new ConfigException("(runtime config)", "kvmactors.devices.assemblies", $"device assembly '{name}' could not be loaded: {e.Message}");
            }
            Scan(asm);
        }
        foreach (var dir in pluginDirectories)
        {
            // A missing folder is a mistake (a typo would otherwise surface later as "no device type").
            if (!Directory.Exists(dir))
                throw new ConfigException("(runtime config)", "kvmactors.devices.plugin-directories",
                    $"plug-in folder '{dir}' does not exist (relative folders are taken from {Environment.CurrentDirectory})");
            foreach (var dll in Directory.GetFiles(dir, "*.dll").Order(StringComparer.Ordinal))
                if (LoadPlugin(dll) is { } asm) Scan(asm);
        }
    }

    /// <summary>Only plug-in folders: for tests of a plug-in alone.</summary>
    public DeviceRegistry(IEnumerable<Assembly> builtIn, IEnumerable<string> pluginDirectories)
        : this(builtIn, [], pluginDirectories) { }

    private static Assembly? LoadPlugin(string path)
    {
        var full = Path.GetFullPath(path);
        var loaded = AppDomain.CurrentDomain.GetAssemblies().Where(a => !a.IsDynamic).ToList();
        if (loaded.FirstOrDefault(a => string.Equals(a.Location, full, StringComparison.Ordinal)) is { } same) return same;
        AssemblyName name;
        try { name = AssemblyName.GetAssemblyName(full); }
        catch (BadImageFormatException) { return null; } // a native library beside the plug-in: not ours to load
        // A copy of an assembly the host already has (the SDK, Akka, copied into the plug-in's bin folder) is
        // not loaded twice: the plug-in binds to the host's, which is what it was built against.
        if (loaded.Any(a => AssemblyName.ReferenceMatchesDefinition(a.GetName(), name))) return null;
        return Assembly.LoadFrom(full);
    }

    private static readonly string SdkAssembly = typeof(DeviceTypeAttribute).Assembly.GetName().Name!;

    private void Scan(Assembly asm)
    {
        if (asm.IsDynamic || _assemblies.Contains(asm)) return;
        // A device class carries [DeviceType], defined in the SDK, so its assembly references the SDK: the others
        // (a plug-in's helper libraries) are not looked into.
        if (asm.GetName().Name != SdkAssembly && asm.GetReferencedAssemblies().All(r => r.Name != SdkAssembly)) return;
        _assemblies.Add(asm);
        Type[] types;
        try { types = asm.GetTypes(); }
        catch (ReflectionTypeLoadException e) { types = e.Types.Where(t => t is not null).ToArray()!; }
        foreach (var t in types)
        {
            var attr = t.GetCustomAttribute<DeviceTypeAttribute>();
            if (attr is not null && typeof(ActorBase).IsAssignableFrom(t) && !t.IsAbstract)
                _byName.TryAdd(attr.Name, t);
        }
    }

    /// <summary>The device class for a config <c>type</c>: a registered short name or a .NET type name.</summary>
    public Type? Resolve(string typeName)
    {
        if (_byName.TryGetValue(typeName, out var t)) return t;
        var byClr = Type.GetType(typeName, throwOnError: false);
        // A plain "Namespace.Type" without the assembly: look in the device assemblies this registry knows.
        byClr ??= _assemblies.Select(a => a.GetType(typeName, false)).FirstOrDefault(x => x is not null);
        return byClr is not null && typeof(ActorBase).IsAssignableFrom(byClr) ? byClr : null;
    }

    public static Props PropsFor(Type deviceType, DeviceContext context) => Props.Create(deviceType, context);
}

using System.Reflection;
using Akka.Actor;

namespace KvmActors.Runtime.Devices;

/// <summary>
/// Finds device classes by the short name of their <see cref="DeviceTypeAttribute"/> or by
/// assembly-qualified type name. Searches the assemblies already loaded, the assemblies named in
/// <c>kvmactors.devices.assemblies</c>, and every *.dll in <c>kvmactors.devices.plugin-directories</c>.
/// </summary>
public sealed class DeviceRegistry
{
    private readonly Dictionary<string, Type> _byName = new(StringComparer.Ordinal);

    public IReadOnlyDictionary<string, Type> Types => _byName;

    public DeviceRegistry(IEnumerable<string> assemblyNames, IEnumerable<string> pluginDirectories)
    {
        foreach (var name in assemblyNames)
        {
            try { Assembly.Load(name); }
            catch (Exception e) { throw new InvalidOperationException($"device assembly '{name}' could not be loaded: {e.Message}", e); }
        }
        foreach (var dir in pluginDirectories)
        {
            // A missing folder is a mistake (a typo would otherwise surface later as "no device type").
            if (!Directory.Exists(dir))
                throw new ConfigException("(runtime config)", "kvmactors.devices.plugin-directories",
                    $"plug-in folder '{dir}' does not exist (relative folders are taken from {Environment.CurrentDirectory})");
            foreach (var dll in Directory.GetFiles(dir, "*.dll"))
                LoadPlugin(dll);
        }
        foreach (var asm in AppDomain.CurrentDomain.GetAssemblies()) Scan(asm);
    }

    private static void LoadPlugin(string path)
    {
        var full = Path.GetFullPath(path);
        if (AppDomain.CurrentDomain.GetAssemblies().Any(a => !a.IsDynamic && string.Equals(a.Location, full, StringComparison.Ordinal))) return;
        try { Assembly.LoadFrom(full); }
        catch (BadImageFormatException) { /* a native library beside the plug-in: not ours to load */ }
    }

    private static readonly string RuntimeAssembly = typeof(DeviceTypeAttribute).Assembly.GetName().Name!;

    private void Scan(Assembly asm)
    {
        if (asm.IsDynamic) return;
        // A device class carries [DeviceType], defined here, so its assembly references this one: the others
        // (the framework, Akka, ...) are not looked into. Enumerating their types cost ~170 ms at start-up.
        if (asm.GetName().Name != RuntimeAssembly && asm.GetReferencedAssemblies().All(r => r.Name != RuntimeAssembly)) return;
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

    /// <summary>The device class for a config <c>type</c>: a registered short name or an assembly-qualified type name.</summary>
    public Type? Resolve(string typeName)
    {
        if (_byName.TryGetValue(typeName, out var t)) return t;
        var byClr = Type.GetType(typeName, throwOnError: false);
        if (byClr is null)
        {
            // A plain "Namespace.Type" without the assembly: look in loaded assemblies.
            byClr = AppDomain.CurrentDomain.GetAssemblies().Select(a => a.GetType(typeName, false)).FirstOrDefault(x => x is not null);
        }
        return byClr is not null && typeof(ActorBase).IsAssignableFrom(byClr) ? byClr : null;
    }

    public static Props PropsFor(Type deviceType, DeviceContext context) => Props.Create(deviceType, context);
}

using System.Globalization;
using Akka.Configuration.Hocon;
using KvmActors.Runtime.Boot;
using KvmActors.Runtime.Memory;
using KvmActors.Runtime.Vm;

namespace KvmActors.Runtime.Config;

/// <summary>
/// Binds a guest's HOCON file (its <c>guest { }</c> block) onto <see cref="GuestSpec"/>, with defaults from
/// <c>kvmactors.guest-defaults</c> and <c>--set</c> overrides. Every unknown key and bad value is a
/// <see cref="ConfigException"/> naming the key and the file.
/// </summary>
public static class GuestConfigLoader
{
    public const string BuiltIn = "<built-in>";
    public const string OverridesSource = "--set";

    public static readonly string[] RegisterNames =
        ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "rflags",
         .. CpuStateNames.ControlRegisters];
    public static readonly string[] SegmentNames = CpuStateNames.Segments;
    /// <summary>The attributes a segment register takes besides selector, base and limit (kvm_segment's fields).</summary>
    public static readonly string[] SegmentAttributes = ["type", "dpl", "db", "l", "g", "s", "present", "avl", "unusable"];

    /// <summary>A guest file is text of a few KiB; anything larger than this is not one.</summary>
    public const ulong MaxConfigBytes = HoconText.MaxFileBytes;

    public static GuestSpec LoadFile(string path, IEnumerable<string>? overrides = null)
    {
        var full = Path.GetFullPath(path);
        var bytes = ConfigFiles.Read(full, path, MaxConfigBytes, "a guest file", problem => new ConfigException(path, "(file)", problem));
        return FromText(System.Text.Encoding.UTF8.GetString(bytes), path, Path.GetDirectoryName(full)!, overrides);
    }

    public static GuestSpec FromText(string hocon, string sourceFile, string baseDirectory, IEnumerable<string>? overrides = null) =>
        FromText(hocon, sourceFile, baseDirectory, overrides, restoring: false);

    /// <summary>
    /// The guest a snapshot was taken of, from the config it saved (<see cref="GuestSpec.SourceConfig"/>): bound as it
    /// was, except that no image, module or region file is read: guest memory comes from the snapshot, so the
    /// files need not exist any more (or on this machine).
    /// </summary>
    /// <param name="overrides">Only where the restored VM's host differs: its console sinks (see <see cref="ConsoleRemap"/>).</param>
    public static GuestSpec FromSnapshot(Snapshot.LoadedSnapshot snapshot, IEnumerable<string>? overrides = null) =>
        FromSnapshot(snapshot.State, Path.Combine(snapshot.Directory, Snapshot.SnapshotFiles.StateFile), overrides);

    /// <param name="source">Where the state came from, named in errors (the state file, or the migration's source).</param>
    public static GuestSpec FromSnapshot(Snapshot.SnapshotState state, string source, IEnumerable<string>? overrides = null) =>
        // A gdb stub the saved VM had (--gdb) is not brought back: its address may be taken, and a restored VM
        // waiting for a debugger that nobody starts would never run on.
        FromText(state.Guest.Config, source, state.Guest.BaseDirectory, ["guest.gdb.listen = \"\"", "guest.gdb.wait = false", .. overrides ?? []],
            restoring: true);

    /// <summary>
    /// A restored guest's console where its new host has another one: each device option <c>sink</c> or <c>input</c>
    /// that <paramref name="remap"/> maps to a new value (a VM saved by <c>serve</c>, attached to its old id, and run
    /// by <c>run --restore</c> writes to stdout; one restored by <c>serve</c> is attached to its new id), as --set lines.
    /// </summary>
    public static IReadOnlyList<string> ConsoleRemap(string configJson, Func<string, string, string?> remap)
    {
        var sets = new List<string>();
        var config = HoconText.Parse(configJson, "(snapshot)", Environment.CurrentDirectory);
        if (!config.HasPath("guest.devices")) return sets;
        var devices = config.GetConfig("guest.devices");
        foreach (var name in devices.Root.GetObject().Items.Keys)
        {
            var key = name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_') ? name : System.Text.Json.JsonSerializer.Serialize(name);
            foreach (var option in new[] { "sink", "input" })
            {
                var path = $"{key}.options.{option}";
                if (devices.HasPath(path) && devices.GetString(path) is { } value && remap(option, value) is { } mapped && mapped != value)
                    sets.Add($"guest.devices.{path} = {System.Text.Json.JsonSerializer.Serialize(mapped)}");
            }
        }
        return sets;
    }

    private static GuestSpec FromText(string hocon, string sourceFile, string baseDirectory, IEnumerable<string>? overrides, bool restoring)
    {
        var file = HoconText.Parse(hocon, sourceFile, baseDirectory);
        Schema.Check(file, sourceFile);
        var merged = file;
        var ov = Akka.Configuration.Config.Empty;
        var overrideList = overrides?.ToList() ?? [];
        if (overrideList.Count > 0)
        {
            ov = ParseOverrides(overrideList, baseDirectory);
            Schema.Check(ov, OverridesSource);
            merged = ov.WithFallback(file);
        }
        var sourceOf = SourceOf(ov, sourceFile);
        var root = new ConfigSection(merged, "", sourceFile, baseDirectory, sourceOf);
        // Shape first (guest = 1 is an error), then the guest block over its defaults.
        var fileGuest = root.GetSection("guest");
        var defaults = KvmActorsConfig.Reference.GetConfig("kvmactors.guest-defaults");
        var guest = new ConfigSection(fileGuest.Keys.Count > 0 ? merged.GetConfig("guest").WithFallback(defaults) : defaults,
            "guest", sourceFile, baseDirectory, sourceOf);
        // Runtime settings are checked here too, so a bad one is reported before anything starts.
        var runtime = root.GetSection("kvmactors").Keys.Count > 0 ? merged.GetConfig("kvmactors") : null;
        var runtimeDefaults = KvmActorsConfig.Reference.GetConfig("kvmactors");
        RuntimeSettingsBinder.Validate(new ConfigSection(runtime?.WithFallback(runtimeDefaults) ?? runtimeDefaults, "kvmactors", sourceFile, baseDirectory, sourceOf));
        var runtimeConfig = runtime?.Root.AtKey("kvmactors") ?? Akka.Configuration.Config.Empty;
        return new Binder(guest, restoring).Bind() with { RuntimeConfig = runtimeConfig, SourceConfig = HoconJson.Write(merged) };
    }

    /// <summary>
    /// Which source gave a full key: <c>--set</c> when an override set it (or a list or value it lies in),
    /// the file otherwise (defaults from reference.conf are valid, so their keys are never blamed).
    /// </summary>
    private static Func<string, string> SourceOf(Akka.Configuration.Config overrides, string file)
    {
        if (overrides.IsEmpty) return _ => file;
        return key =>
        {
            var bracket = key.IndexOf('[');
            var path = bracket < 0 ? key : key[..bracket];
            try
            {
                if (path.Length == 0 || !overrides.HasPath(path)) return file;
                return bracket >= 0 || !overrides.GetValue(path).IsObject() || path == key ? OverridesSource : file;
            }
            catch (Exception) { return file; }
        };
    }

    /// <summary>Each <c>key=value</c> is a HOCON line; keys are guest-file paths like <c>guest.vcpus</c>.</summary>
    public static Akka.Configuration.Config ParseOverrides(IEnumerable<string> overrides, string? baseDirectory = null)
    {
        var text = string.Join("\n", overrides.Select(o =>
        {
            var eq = o.IndexOf('=');
            if (eq <= 0) throw new ConfigException(OverridesSource, o, "expected key=value");
            return o;
        }));
        return HoconText.Parse(text, OverridesSource, baseDirectory ?? Environment.CurrentDirectory);
    }

    /// <summary>Binding with errors naming <c>guest.KEY</c> and its source.</summary>
    private sealed class Binder(ConfigSection guest, bool restoring)
    {
        /// <summary>At most this many memory regions: KVM's smallest memslot count (KVM_CAP_NR_MEMSLOTS, 509 on older kernels).</summary>
        private const int MaxRegions = 509;

        public GuestSpec Bind()
        {
            var name = guest.GetString("name");
            var vcpus = (int)guest.GetInteger("vcpus", max: 254);
            if (vcpus < 1) throw guest.Error("vcpus", "must be at least 1");

            var (memory, contents) = BindMemory();
            var image = BindImage(memory);
            var platform = PlatformConfig.Bind(guest, vcpus, memory, contents, image, restoring);
            var cpu = BindCpuState(guest.GetSection("cpu"));
            var overrides = new Dictionary<int, CpuStateSpec>();
            foreach (var (key, section) in guest.GetSection("vcpu-overrides").Sections())
                overrides[VcpuIndex(guest.GetSection("vcpu-overrides"), key, vcpus)] = BindCpuState(section);
            var devices = BindDevices();
            var halt = guest.GetEnum("halt-policy", ["all-halted", "first-halt"], what: "a policy");
            var unmapped = guest.GetEnum("unmapped-io", new Dictionary<string, UnmappedAccessPolicy>
            {
                ["ignore"] = UnmappedAccessPolicy.Ignore, ["strict"] = UnmappedAccessPolicy.Strict,
            }, what: "a policy");
            var supervision = guest.GetSection("supervision");
            var faults = guest.GetSection("faults");
            return new GuestSpec
            {
                Name = name, SourceFile = guest.File, BaseDirectory = guest.BaseDirectory,
                Machine = new MachineSpec
                {
                    SourceFile = guest.File, VcpuCount = vcpus, Memory = memory, Image = image, Cpu = cpu,
                    VcpuOverrides = overrides, Platform = platform,
                },
                Devices = devices, HaltPolicy = halt, UnmappedIo = unmapped, Pci = BindPci(guest.GetSection("pci")),
                VcpuSupervision = BindSupervision(supervision.GetSection("vcpu")),
                DeviceSupervision = BindSupervision(supervision.GetSection("device")),
                VcpuFaults = BindVcpuFaults(faults.GetSection("vcpus"), vcpus),
                DeviceFaults = BindDeviceFaults(faults.GetSection("devices"), devices),
                Gdb = BindGdb(guest.GetSection("gdb")),
                Expect = ExpectConfig.Bind(guest.GetSection("expect")),
            };
        }

        private static int VcpuIndex(ConfigSection map, string key, int vcpus) =>
            int.TryParse(key, NumberStyles.None, CultureInfo.InvariantCulture, out var idx) && idx < vcpus
                ? idx
                : throw map.Error(key, $"must be a vCPU index 0..{vcpus - 1}");

        private static readonly Dictionary<string, SupervisionDirective> Directives = new()
        {
            ["restart"] = SupervisionDirective.Restart, ["stop-vm"] = SupervisionDirective.StopVm, ["escalate"] = SupervisionDirective.Escalate,
        };

        /// <summary><c>guest.gdb</c>: no stub unless <c>listen</c> is set; the address itself is checked when the stub binds it.</summary>
        private static Runtime.Debug.GdbSpec? BindGdb(ConfigSection c)
        {
            var listen = c.GetString("listen", "");
            var spec = new Runtime.Debug.GdbSpec(listen, c.GetBool("wait", false), c.GetBool("allow-remote", false));
            if (listen.Length == 0) return null;
            if (spec.TryEndPoint(out var problem) is null) throw c.Error("listen", problem!);
            return spec;
        }

        private static SupervisionPolicy BindSupervision(ConfigSection c) =>
            new(c.GetEnum("directive", Directives, what: "a directive"), (int)c.GetInteger("max-restarts", max: 1_000_000),
                c.GetDuration("within", max: TimeSpan.FromDays(1)));

        private static Dictionary<int, VcpuFaults> BindVcpuFaults(ConfigSection fc, int vcpus)
        {
            var result = new Dictionary<int, VcpuFaults>();
            foreach (var (key, c) in fc.Sections())
                result[VcpuIndex(fc, key, vcpus)] = new VcpuFaults(
                    c.GetInteger("throw-after-exits", 0),
                    (int)c.GetInteger("kvm-run-errno", 0, max: 4095),
                    c.GetInteger("kvm-run-errno-after-exits", 0),
                    c.GetBool("repeat", false));
            return result;
        }

        private static Dictionary<string, DeviceFaults> BindDeviceFaults(ConfigSection fc, List<DeviceSpec> devices)
        {
            var result = new Dictionary<string, DeviceFaults>();
            foreach (var (name, c) in fc.Sections())
            {
                if (devices.All(d => d.Name != name))
                    throw fc.Error(name, $"no device '{name}' (devices: {string.Join(", ", devices.Select(d => d.Name))})");
                result[name] = new DeviceFaults(
                    c.GetInteger("throw-on-access", 0),
                    c.GetBool("repeat", false),
                    c.GetDuration("reply-delay", TimeSpan.Zero, max: TimeSpan.FromMinutes(1)));
            }
            return result;
        }

        /// <summary>The regions and their initial contents, from one pass over the list.</summary>
        private (List<MemoryRegionSpec>, List<RegionContentSpec>) BindMemory()
        {
            if (!guest.Has("memory")) throw guest.Error("memory", "expected a list of regions");
            var regions = guest.GetObjectList("memory", "{ address, size } regions", allowEmpty: false);
            if (regions.Count > MaxRegions) throw guest.Error("memory", $"{regions.Count} regions: at most {MaxRegions} (KVM's memory slots)");
            var limit = MachineLimits.GuestPhysicalLimit;
            var list = new List<MemoryRegionSpec>();
            var contents = new List<RegionContentSpec>();
            ulong total = 0;
            for (var i = 0; i < regions.Count; i++)
            {
                var c = regions[i];
                var rname = c.GetString("name", $"region{i}");
                var addr = c.GetSize("address");
                var size = c.GetSize("size");
                var ro = c.GetBool("read-only", false);
                if (addr % GuestMemory.PageSize != 0) throw c.Error("address", $"0x{addr:x} is not page-aligned (4 KiB)");
                if (size == 0 || size % GuestMemory.PageSize != 0) throw c.Error("size", $"0x{size:x} must be a non-zero multiple of 4 KiB");
                if (size > ulong.MaxValue - addr) throw c.Error("size", $"0x{addr:x} + 0x{size:x} wraps past the end of the address space");
                if (addr + size > limit)
                    throw c.Error("size", $"region '{rname}' ends at 0x{addr + size:x}, beyond the guest's {MachineLimits.PhysicalAddressBits}-bit physical address space (0x{limit:x}, {MachineLimits.PhysicalAddressSource})");
                total += size;
                if (total > MachineLimits.HostMappable)
                    throw c.Error("size", $"the regions add up to 0x{total:x} bytes, more than the host can map (0x{MachineLimits.HostMappable:x})");
                var clash = list.FirstOrDefault(r => r.GuestAddress < addr + size && addr < r.GuestAddress + r.Size);
                if (clash is not null) throw c.Error("address", $"region '{rname}' overlaps region '{clash.Name}'");
                var region = new MemoryRegionSpec(rname, addr, size, ro);
                list.Add(region);
                if (Content.Read(c, size, $"region '{rname}'", restoring) is { } content)
                    contents.Add(new RegionContentSpec(rname, addr, content.Data, content.Origin));
            }
            return (list, contents);
        }

        private ImageSpec BindImage(List<MemoryRegionSpec> memory)
        {
            var image = guest.GetSection("image");
            var format = image.GetEnum("format", PlatformNames.Formats, what: "a format");
            var load = image.GetSize("load-address");
            var hasFile = image.Has("file");
            if (hasFile == image.Has("inline")) throw guest.Error("image", "give exactly one of image.file or image.inline");
            var ram = (ulong)memory.Sum(r => (decimal)r.Size);
            var content = Content.Read(image, ram, "the guest's memory", restoring)!.Value;
            return new ImageSpec(format, content.Data, load, content.Origin, hasFile ? Path.Combine(guest.BaseDirectory, content.Origin) : null);
        }

        private static CpuStateSpec BindCpuState(ConfigSection c)
        {
            var regs = new Dictionary<string, ulong>();
            var rc = c.GetSection("registers");
            foreach (var key in rc.Keys) regs[key] = rc.GetSize(key);
            var segs = new Dictionary<string, SegmentSpec>();
            foreach (var (seg, s) in c.GetSection("segments").Sections())
            {
                var table = CpuStateNames.Tables.Contains(seg);
                byte? Bits(string key, int max) => s.Has(key) ? (byte)s.GetInteger(key, max: max) : null;
                byte? Flag(string key) => s.Has(key) ? (byte)(s.GetBool(key) ? 1 : 0) : null;
                segs[seg] = new SegmentSpec(
                    s.Has("selector") ? (ushort)s.GetSize("selector", max: 0xffff) : null,
                    s.Has("base") ? s.GetSize("base") : null,
                    s.Has("limit") ? (uint)s.GetSize("limit", max: table ? 0xffff : uint.MaxValue) : null)
                {
                    Type = Bits("type", 15), Dpl = Bits("dpl", 3), Db = Flag("db"), L = Flag("l"), G = Flag("g"), S = Flag("s"),
                    Present = Flag("present"), Avl = Flag("avl"), Unusable = Flag("unusable"),
                };
                if (segs[seg] is { L: 1, Db: 1 })
                    throw s.Error("l", "a 64-bit code segment (l = true) must have db = false (Intel SDM vol. 3 §5.2.1)");
            }
            return new CpuStateSpec(regs, segs);
        }

        /// <summary><c>guest.pci</c>: the windows the VM lays PCI BARs out in (one range each).</summary>
        private static PciWindows BindPci(ConfigSection pci)
        {
            var io = pci.GetRanges("io-window", 0xffff);
            var mmio = pci.GetRanges("mmio-window", ulong.MaxValue);
            if (io.Count != 1) throw pci.Error("io-window", "one port range, e.g. \"0xc000-0xffff\"");
            if (mmio.Count != 1) throw pci.Error("mmio-window", "one address range, e.g. \"0xc0000000-0xfebfffff\"");
            return new PciWindows(new PortRange((ushort)io[0].First, (ushort)io[0].Last), new MmioRange(mmio[0].First, mmio[0].Last));
        }

        private List<DeviceSpec> BindDevices()
        {
            var list = new List<DeviceSpec>();
            foreach (var (dname, d) in guest.GetSection("devices").Sections())
            {
                if (!d.GetBool("enabled", true)) continue;
                var type = d.GetString("type");
                var ports = d.GetRanges("ports", 0xffff).Select(r => new PortRange((ushort)r.First, (ushort)r.Last)).ToList();
                var mmio = d.GetRanges("mmio", ulong.MaxValue).Select(r => new MmioRange(r.First, r.Last)).ToList();
                var irqs = d.GetStringList("irqs").Select(s =>
                    ConfigNumbers.TryParse(s, out var irq) && irq < 256 ? (int)irq : throw d.Error("irqs", $"'{s}' is not an IRQ line")).ToList();
                var options = new DeviceOptions(d.GetSection("options"));
                foreach (var other in list)
                {
                    foreach (var r in ports)
                        if (other.Ports.Any(o => o.Overlaps(r)))
                            throw d.Error("ports", $"{r} overlaps device '{other.Name}' ({other.Ports.First(o => o.Overlaps(r))}): devices '{other.Name}' and '{dname}' claim the same ports");
                    foreach (var r in mmio)
                        if (other.Mmio.Any(o => o.Overlaps(r)))
                            throw d.Error("mmio", $"{r} overlaps device '{other.Name}' ({other.Mmio.First(o => o.Overlaps(r))}): devices '{other.Name}' and '{dname}' claim the same addresses");
                }
                list.Add(new DeviceSpec(dname, type, ports, mmio, irqs, options));
            }
            return list;
        }
    }

    /// <summary>The <c>file</c> (relative to the config file) or <c>inline</c> (hex) contents of a region, image or module.</summary>
    internal static class Content
    {
        /// <summary>The bytes, or null when neither key is given; <paramref name="max"/> bounds them (the size of <paramref name="into"/>).</summary>
        /// <param name="restoring">A snapshot is restored: memory holds the contents, so no file is read (no bytes).</param>
        public static (byte[] Data, string Origin, string Key)? Read(ConfigSection c, ulong max, string into, bool restoring)
        {
            var hasFile = c.Has("file");
            var hasInline = c.Has("inline");
            if (!hasFile && !hasInline) return null;
            if (hasFile && hasInline) throw c.Error("file", "give file or inline, not both");
            if (hasInline)
            {
                var hex = c.GetString("inline");
                var digits = new string(hex.Where(ch => !char.IsWhiteSpace(ch) && ch != ',').ToArray());
                if (digits.Length % 2 != 0 || !digits.All(char.IsAsciiHexDigit))
                    throw c.Error("inline", "expected hex bytes like \"ba f8 03 ...\"");
                var data = Convert.FromHexString(digits);
                if ((ulong)data.Length > max) throw c.Error("inline", $"'inline' is {data.Length} bytes, larger than {into} (0x{max:x} bytes)");
                return (data, "inline", "inline");
            }
            var rel = c.GetString("file");
            if (restoring) return ([], rel, "file");
            var path = Path.Combine(c.BaseDirectory, rel);
            return (ConfigFiles.Read(path, rel, max, into, problem => c.Error("file", problem)), rel, "file");
        }
    }

    /// <summary>The keys a guest file may use. Maps named "*" accept any key (device names, vCPU indexes).</summary>
    internal static class Schema
    {
        private sealed class Node
        {
            public Dictionary<string, Node?> Children { get; } = new();
            public Node? Any { get; init; }
            /// <summary>Free-form (device options: the device checks them).</summary>
            public bool Open { get; init; }
            public Node Add(string key, Node? child = null) { Children[key] = child; return this; }
        }

        private static Node CpuState()
        {
            var regs = new Node();
            foreach (var r in RegisterNames) regs.Add(r);
            var seg = new Node().Add("selector").Add("base").Add("limit");
            foreach (var a in SegmentAttributes) seg.Add(a);
            var table = new Node().Add("base").Add("limit");
            var segs = new Node();
            foreach (var s in SegmentNames) segs.Add(s, seg);
            foreach (var t in CpuStateNames.Tables) segs.Add(t, table);
            return new Node().Add("registers", regs).Add("segments", segs);
        }

        private static readonly Node Guest = BuildGuest();

        private static Node BuildGuest()
        {
            var cpu = CpuState().Add("mode").Add("boot-tables");
            var policy = new Node().Add("directive").Add("max-restarts").Add("within");
            var vcpuFaults = new Node().Add("throw-after-exits").Add("kvm-run-errno").Add("kvm-run-errno-after-exits").Add("repeat");
            var deviceFaults = new Node().Add("throw-on-access").Add("repeat").Add("reply-delay");
            var device = new Node().Add("type").Add("ports").Add("mmio").Add("irqs").Add("enabled")
                .Add("options", new Node { Open = true });
            return new Node()
                .Add("name").Add("vcpus").Add("halt-policy").Add("unmapped-io").Add("irqchip").Add("acpi")
                .Add("memory", new Node().Add("name").Add("address").Add("size").Add("read-only").Add("file").Add("inline"))
                .Add("image", new Node().Add("file").Add("inline").Add("load-address").Add("format").Add("cmdline")
                    .Add("modules", new Node().Add("file").Add("inline").Add("cmdline")))
                .Add("cpuid", new Node().Add("mask").Add("model").Add("vendor").Add("family").Add("model-number").Add("stepping")
                    .Add("brand").Add("features"))
                .Add("pci", new Node().Add("io-window").Add("mmio-window"))
                .Add("cpu", cpu)
                .Add("vcpu-overrides", new Node { Any = CpuState() })
                .Add("devices", new Node { Any = device })
                .Add("supervision", new Node().Add("vcpu", policy).Add("device", policy))
                .Add("gdb", new Node().Add("listen").Add("wait").Add("allow-remote"))
                .Add("expect", new Node().Add("status").Add("output-contains").Add("output-matches").Add("timeout"))
                .Add("fleet", new Node().Add("checkpoint-interval"))
                .Add("faults", new Node().Add("vcpus", new Node { Any = vcpuFaults }).Add("devices", new Node { Any = deviceFaults }));
        }

        // A guest file may also tune the runtime (kvmactors { devices.plugin-directories = [...] });
        // those keys are checked against reference.conf by the runtime, not here.
        private static readonly Node Root = new Node().Add("guest", Guest).Add("kvmactors", new Node { Open = true });

        public static void Check(Akka.Configuration.Config config, string file) => Walk(config.Root, Root, "", file);

        private static void Walk(HoconValue value, Node node, string path, string file)
        {
            if (node.Open) return;
            if (value.IsArray())
            {
                var i = 0;
                foreach (var item in value.GetArray()) Walk(item, node, $"{path}[{i++}]", file);
                return;
            }
            if (!value.IsObject()) return;
            foreach (var (key, child) in value.GetObject().Items)
            {
                var childPath = path.Length == 0 ? key : $"{path}.{key}";
                Node? next;
                if (node.Children.TryGetValue(key, out next)) { }
                else if (node.Any is not null) next = node.Any;
                else
                {
                    var known = node.Children.Keys.OrderBy(k => k).ToList();
                    throw new ConfigException(file, childPath, $"unknown key{(known.Count > 0 ? $" (known here: {string.Join(", ", known)})" : "")}");
                }
                if (next is not null) Walk(child, next, childPath, file);
                else if (child.IsObject() && !child.IsString())
                    throw new ConfigException(file, childPath, "expected a value, not an object");
            }
        }
    }
}

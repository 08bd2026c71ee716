using System.Globalization;
using Akka.Configuration;
using Akka.Configuration.Hocon;
using KvmActors.Runtime.Boot;
using KvmActors.Runtime.Memory;

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
        ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "rflags"];
    public static readonly string[] SegmentNames = ["cs", "ds", "es", "fs", "gs", "ss"];

    public static GuestSpec LoadFile(string path, IEnumerable<string>? overrides = null)
    {
        var full = Path.GetFullPath(path);
        if (!File.Exists(full)) throw new ConfigException(path, "(file)", "no such file");
        return FromText(File.ReadAllText(full), path, Path.GetDirectoryName(full)!, overrides);
    }

    public static GuestSpec FromText(string hocon, string sourceFile, string baseDirectory, IEnumerable<string>? overrides = null)
    {
        var file = Parse(hocon, sourceFile);
        Schema.Check(file, sourceFile);
        var merged = file;
        var overrideList = overrides?.ToList() ?? [];
        if (overrideList.Count > 0)
        {
            var ov = ParseOverrides(overrideList);
            Schema.Check(ov, OverridesSource);
            merged = ov.WithFallback(file);
        }
        var defaults = KvmActorsConfig.Reference.GetConfig("kvmactors.guest-defaults");
        var guest = merged.HasPath("guest") ? merged.GetConfig("guest").WithFallback(defaults) : defaults;
        var runtime = merged.HasPath("kvmactors")
            ? merged.GetConfig("kvmactors").Root.AtKey("kvmactors")
            : Akka.Configuration.Config.Empty;
        return new Binder(guest, sourceFile, baseDirectory).Bind() with { RuntimeConfig = runtime };
    }

    /// <summary>Each <c>key=value</c> is a HOCON line; keys are guest-file paths like <c>guest.vcpus</c>.</summary>
    public static Akka.Configuration.Config ParseOverrides(IEnumerable<string> overrides)
    {
        var text = string.Join("\n", overrides.Select(o =>
        {
            var eq = o.IndexOf('=');
            if (eq <= 0) throw new ConfigException(OverridesSource, o, "expected key=value");
            return o;
        }));
        return Parse(text, OverridesSource);
    }

    private static Akka.Configuration.Config Parse(string text, string source)
    {
        try { return ConfigurationFactory.ParseString(text); }
        catch (Exception e) { throw new ConfigException(source, "(syntax)", FirstLine(e.Message), e); }
    }

    private static string FirstLine(string s) => s.Split('\n')[0].Trim();

    /// <summary>Parses "0x3f8-0x3ff", "0x3f8" or a number into an inclusive range.</summary>
    public static bool TryParseRange(string text, out ulong first, out ulong last)
    {
        first = last = 0;
        var dash = text.IndexOf('-');
        if (dash < 0) { var ok = ConfigNumbers.TryParse(text, out first); last = first; return ok; }
        return ConfigNumbers.TryParse(text[..dash], out first) && ConfigNumbers.TryParse(text[(dash + 1)..], out last) && last >= first;
    }

    /// <summary>Binding with errors naming <c>guest.KEY</c> and the file.</summary>
    private sealed class Binder(Akka.Configuration.Config guest, string file, string baseDirectory)
    {
        private ConfigException Error(string key, string problem) => new(file, "guest." + key, problem);

        private string Str(Akka.Configuration.Config c, string key, string prefix)
        {
            try
            {
                var v = c.GetValue(key);
                if (v is null || !v.IsString()) throw Error(prefix + key, "expected a value");
                return v.GetString();
            }
            catch (ConfigException) { throw; }
            catch (Exception e) { throw Error(prefix + key, e.Message); }
        }

        private ulong Num(Akka.Configuration.Config c, string key, string prefix, ulong max = ulong.MaxValue)
        {
            var text = Str(c, key, prefix);
            if (!ConfigNumbers.TryParse(text, out var v)) throw Error(prefix + key, $"'{text}' is not a number (decimal, 0x-hex, optional K/M/G)");
            if (v > max) throw Error(prefix + key, $"{text} is out of range (max 0x{max:x})");
            return v;
        }

        public GuestSpec Bind()
        {
            var name = Str(guest, "name", "");
            var vcpus = (int)Num(guest, "vcpus", "", 254);
            if (vcpus < 1) throw Error("vcpus", "must be at least 1");

            var memory = BindMemory();
            var image = BindImage();
            var platform = PlatformConfig.Bind(guest, file, baseDirectory, vcpus, memory, image);
            var mode = platform.ModeName;
            var cpu = BindCpuState(guest.GetConfig("cpu"), "cpu.");
            var overrides = new Dictionary<int, CpuStateSpec>();
            if (guest.HasPath("vcpu-overrides"))
            {
                var ov = guest.GetConfig("vcpu-overrides");
                foreach (var key in Keys(ov))
                {
                    if (!int.TryParse(key, NumberStyles.None, CultureInfo.InvariantCulture, out var idx) || idx >= vcpus)
                        throw Error($"vcpu-overrides.{key}", $"must be a vCPU index 0..{vcpus - 1}");
                    overrides[idx] = BindCpuState(ov.GetConfig(key), $"vcpu-overrides.{key}.");
                }
            }
            var devices = BindDevices();
            var halt = Str(guest, "halt-policy", "");
            if (halt is not ("all-halted" or "first-halt")) throw Error("halt-policy", $"'{halt}' is not a policy (all-halted, first-halt)");
            var unmapped = Str(guest, "unmapped-io", "") switch
            {
                "ignore" => UnmappedAccessPolicy.Ignore,
                "strict" => UnmappedAccessPolicy.Strict,
                var other => throw Error("unmapped-io", $"'{other}' is not a policy (ignore, strict)"),
            };
            return new GuestSpec
            {
                Name = name, SourceFile = file, BaseDirectory = baseDirectory,
                Machine = new MachineSpec
                {
                    SourceFile = file, VcpuCount = vcpus, Memory = memory, Image = image, Cpu = cpu,
                    VcpuOverrides = overrides, Platform = platform,
                },
                Devices = devices, HaltPolicy = halt, UnmappedIo = unmapped,
                VcpuSupervision = BindSupervision("vcpu"), DeviceSupervision = BindSupervision("device"),
                VcpuFaults = BindVcpuFaults(vcpus), DeviceFaults = BindDeviceFaults(devices),
            };
        }

        private SupervisionPolicy BindSupervision(string kind)
        {
            var p = $"supervision.{kind}.";
            var c = guest.GetConfig($"supervision.{kind}");
            var directive = Str(c, "directive", p) switch
            {
                "restart" => SupervisionDirective.Restart,
                "stop-vm" => SupervisionDirective.StopVm,
                "escalate" => SupervisionDirective.Escalate,
                var other => throw Error(p + "directive", $"'{other}' is not a directive (restart, stop-vm, escalate)"),
            };
            var max = (int)Num(c, "max-restarts", p, 1_000_000);
            return new SupervisionPolicy(directive, max, Duration(c, "within", p));
        }

        private TimeSpan Duration(Akka.Configuration.Config c, string key, string prefix)
        {
            try { return c.GetTimeSpan(key, null, allowInfinite: false); }
            catch (Exception e) { throw Error(prefix + key, $"'{Str(c, key, prefix)}' is not a duration (e.g. 50ms, 10s): {e.Message}"); }
        }

        private bool Bool(Akka.Configuration.Config c, string key, string prefix) => Str(c, key, prefix) switch
        {
            "true" or "on" or "yes" => true,
            "false" or "off" or "no" => false,
            var other => throw Error(prefix + key, $"'{other}' is not a boolean"),
        };

        private Dictionary<int, VcpuFaults> BindVcpuFaults(int vcpus)
        {
            var result = new Dictionary<int, VcpuFaults>();
            if (!guest.HasPath("faults.vcpus")) return result;
            var fc = guest.GetConfig("faults.vcpus");
            foreach (var key in Keys(fc))
            {
                var p = $"faults.vcpus.{key}.";
                if (!int.TryParse(key, NumberStyles.None, CultureInfo.InvariantCulture, out var idx) || idx >= vcpus)
                    throw Error($"faults.vcpus.{key}", $"must be a vCPU index 0..{vcpus - 1}");
                var c = fc.GetConfig(key);
                result[idx] = new VcpuFaults(
                    c.HasPath("throw-after-exits") ? (long)Num(c, "throw-after-exits", p) : 0,
                    c.HasPath("kvm-run-errno") ? (int)Num(c, "kvm-run-errno", p, 4095) : 0,
                    c.HasPath("kvm-run-errno-after-exits") ? (long)Num(c, "kvm-run-errno-after-exits", p) : 0,
                    c.HasPath("repeat") && Bool(c, "repeat", p));
            }
            return result;
        }

        private Dictionary<string, DeviceFaults> BindDeviceFaults(List<DeviceSpec> devices)
        {
            var result = new Dictionary<string, DeviceFaults>();
            if (!guest.HasPath("faults.devices")) return result;
            var fc = guest.GetConfig("faults.devices");
            foreach (var name in Keys(fc))
            {
                var p = $"faults.devices.{name}.";
                if (devices.All(d => d.Name != name))
                    throw Error($"faults.devices.{name}", $"no device '{name}' (devices: {string.Join(", ", devices.Select(d => d.Name))})");
                var c = fc.GetConfig(name);
                result[name] = new DeviceFaults(
                    c.HasPath("throw-on-access") ? (long)Num(c, "throw-on-access", p) : 0,
                    c.HasPath("repeat") && Bool(c, "repeat", p),
                    c.HasPath("reply-delay") ? Duration(c, "reply-delay", p) : TimeSpan.Zero);
            }
            return result;
        }

        private List<MemoryRegionSpec> BindMemory()
        {
            var value = guest.GetValue("memory");
            if (value is null || !value.IsArray()) throw Error("memory", "expected a list of regions");
            var list = new List<MemoryRegionSpec>();
            var i = 0;
            foreach (var item in value.GetArray())
            {
                var prefix = $"memory[{i}].";
                if (!item.IsObject()) throw Error($"memory[{i}]", "expected { address, size }");
                var c = item.ToConfig();
                var rname = c.HasPath("name") ? Str(c, "name", prefix) : $"region{i}";
                var addr = Num(c, "address", prefix);
                var size = Num(c, "size", prefix);
                var ro = c.HasPath("read-only") && Str(c, "read-only", prefix) == "true";
                if (addr % GuestMemory.PageSize != 0) throw Error(prefix + "address", $"0x{addr:x} is not page-aligned (4 KiB)");
                if (size == 0 || size % GuestMemory.PageSize != 0) throw Error(prefix + "size", $"0x{size:x} must be a non-zero multiple of 4 KiB");
                var spec = new MemoryRegionSpec(rname, addr, size, ro);
                var clash = list.FirstOrDefault(r => r.GuestAddress < addr + size && addr < r.GuestAddress + r.Size);
                if (clash is not null) throw Error(prefix + "address", $"region '{rname}' overlaps region '{clash.Name}'");
                list.Add(spec);
                i++;
            }
            if (list.Count == 0) throw Error("memory", "at least one region is needed");
            return list;
        }

        private ImageSpec BindImage()
        {
            var format = Str(guest, "image.format", "");
            if (!Boot.PlatformNames.Formats.Contains(format))
                throw Error("image.format", $"'{format}' is not a format ({string.Join(", ", Boot.PlatformNames.Formats)})");
            var load = Num(guest, "image.load-address", "");
            var hasFile = guest.HasPath("image.file");
            var hasInline = guest.HasPath("image.inline");
            if (hasFile == hasInline) throw Error("image", "give exactly one of image.file or image.inline");
            if (hasInline)
            {
                var hex = Str(guest, "image.inline", "");
                return new ImageSpec(format, ParseHex(hex), load, "inline", null);
            }
            var rel = Str(guest, "image.file", "");
            var path = Path.Combine(baseDirectory, rel);
            if (!File.Exists(path)) throw Error("image.file", $"'{rel}' not found (looked in {path})");
            return new ImageSpec(format, File.ReadAllBytes(path), load, rel, path);
        }

        private byte[] ParseHex(string hex)
        {
            var digits = new string(hex.Where(c => !char.IsWhiteSpace(c) && c != ',').ToArray());
            if (digits.Length % 2 != 0 || !digits.All(char.IsAsciiHexDigit))
                throw Error("image.inline", "expected hex bytes like \"ba f8 03 ...\"");
            return Convert.FromHexString(digits);
        }

        private CpuStateSpec BindCpuState(Akka.Configuration.Config c, string prefix)
        {
            var regs = new Dictionary<string, ulong>();
            if (c.HasPath("registers"))
            {
                var rc = c.GetConfig("registers");
                foreach (var key in Keys(rc))
                    regs[key] = Num(rc, key, prefix + "registers.");
            }
            var segs = new Dictionary<string, SegmentSpec>();
            if (c.HasPath("segments"))
            {
                var sc = c.GetConfig("segments");
                foreach (var seg in Keys(sc))
                {
                    var s = sc.GetConfig(seg);
                    var p = $"{prefix}segments.{seg}.";
                    segs[seg] = new SegmentSpec(
                        s.HasPath("selector") ? (ushort)Num(s, "selector", p, 0xffff) : null,
                        s.HasPath("base") ? Num(s, "base", p) : null,
                        s.HasPath("limit") ? (uint)Num(s, "limit", p, uint.MaxValue) : null);
                }
            }
            return new CpuStateSpec(regs, segs);
        }

        private List<DeviceSpec> BindDevices()
        {
            var list = new List<DeviceSpec>();
            if (!guest.HasPath("devices")) return list;
            var dc = guest.GetConfig("devices");
            foreach (var dname in Keys(dc))
            {
                var d = dc.GetConfig(dname);
                var p = $"devices.{dname}.";
                if (d.HasPath("enabled") && Str(d, "enabled", p) == "false") continue;
                if (!d.HasPath("type")) throw Error(p + "type", "missing (a registered device name or a .NET type name)");
                var type = Str(d, "type", p);
                var ports = Ranges(d, "ports", p, 0xffff).Select(r => new PortRange((ushort)r.First, (ushort)r.Last)).ToList();
                var mmio = Ranges(d, "mmio", p, ulong.MaxValue).Select(r => new MmioRange(r.First, r.Last)).ToList();
                var irqs = new List<int>();
                if (d.HasPath("irqs"))
                    foreach (var s in d.GetStringList("irqs"))
                        irqs.Add(ConfigNumbers.TryParse(s, out var irq) && irq < 256 ? (int)irq : throw Error(p + "irqs", $"'{s}' is not an IRQ line"));
                var options = new DeviceOptions(d.HasPath("options") ? d.GetConfig("options") : null,
                    $"guest.devices.{dname}.options", file, baseDirectory);
                foreach (var other in list)
                {
                    foreach (var r in ports)
                        if (other.Ports.Any(o => o.Overlaps(r)))
                            throw Error(p + "ports", $"{r} overlaps device '{other.Name}' ({other.Ports.First(o => o.Overlaps(r))}): devices '{other.Name}' and '{dname}' claim the same ports");
                    foreach (var r in mmio)
                        if (other.Mmio.Any(o => o.Overlaps(r)))
                            throw Error(p + "mmio", $"{r} overlaps device '{other.Name}' ({other.Mmio.First(o => o.Overlaps(r))}): devices '{other.Name}' and '{dname}' claim the same addresses");
                }
                list.Add(new DeviceSpec(dname, type, ports, mmio, irqs, options));
            }
            return list;
        }

        private IEnumerable<(ulong First, ulong Last)> Ranges(Akka.Configuration.Config d, string key, string prefix, ulong max)
        {
            if (!d.HasPath(key)) yield break;
            var v = d.GetValue(key);
            var items = v.IsArray() ? v.GetArray().Select(x => x.GetString()) : [v.GetString()];
            foreach (var s in items)
            {
                if (!TryParseRange(s, out var first, out var last) || last > max)
                    throw Error(prefix + key, $"'{s}' is not a range (e.g. \"0x3f8-0x3ff\" or \"0xf4\")");
                yield return (first, last);
            }
        }
    }

    internal static IEnumerable<string> Keys(Akka.Configuration.Config c) =>
        c.IsEmpty ? [] : c.Root.GetObject().Items.Keys;

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
            var segs = new Node();
            foreach (var s in SegmentNames) segs.Add(s, seg);
            return new Node().Add("registers", regs).Add("segments", segs);
        }

        private static readonly Node Guest = BuildGuest();

        private static Node BuildGuest()
        {
            var cpu = CpuState().Add("mode");
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
                .Add("cpuid", new Node().Add("mask"))
                .Add("cpu", cpu)
                .Add("vcpu-overrides", new Node { Any = CpuState() })
                .Add("devices", new Node { Any = device })
                .Add("supervision", new Node().Add("vcpu", policy).Add("device", policy))
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

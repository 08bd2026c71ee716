using System.Globalization;
using Akka.Configuration;
using KvmActors.Runtime.Boot;
using KvmActors.Runtime.Memory;

namespace KvmActors.Runtime.Config;

/// <summary>
/// Binds the boot-platform keys of a guest config: <c>cpu.mode</c>, <c>image.format</c>, <c>image.cmdline</c>,
/// <c>image.modules</c>, <c>irqchip</c>, <c>cpuid.mask</c> and the optional <c>file</c>/<c>inline</c> contents
/// of memory regions. Every error is a <see cref="ConfigException"/> naming <c>guest.KEY</c> and the file.
/// </summary>
public static class PlatformConfig
{
    /// <param name="guest">The merged guest block (file, overrides, defaults).</param>
    /// <param name="memory">The memory regions in config order (index i is <c>memory[i]</c>).</param>
    public static PlatformSpec Bind(Akka.Configuration.Config guest, string file, string baseDirectory, int vcpus,
        IReadOnlyList<MemoryRegionSpec> memory, ImageSpec image)
    {
        ConfigException Error(string key, string problem) => new(file, "guest." + key, problem);
        var imageKey = image.Path is null ? "image.inline" : "image.file";

        // Image format and the mode it implies.
        var format = image.Format;
        if (!PlatformNames.Formats.Contains(format))
            throw Error("image.format", $"'{format}' is not a format ({string.Join(", ", PlatformNames.Formats)})");
        var modeText = StrOr(guest, "cpu.mode", "auto", Error);
        if (!PlatformNames.Modes.Contains(modeText))
            throw Error("cpu.mode", $"'{modeText}' is not a CPU mode ({string.Join(", ", PlatformNames.Modes)})");

        CpuMode mode;
        switch (format)
        {
            case PlatformNames.FormatElf:
            {
                ElfImage elf;
                try { elf = ImageLoader.ParseElf(image.Bytes); }
                catch (BootImageException e) { throw Error(imageKey, $"'{image.Origin}' is not a loadable ELF executable: {e.Message}"); }
                var natural = elf.Bits == 64 ? CpuMode.Long : CpuMode.Protected;
                mode = modeText == "auto" ? natural : ParseMode(modeText);
                if (mode == CpuMode.Real)
                    throw Error("cpu.mode", $"an ELF{elf.Bits} image cannot be entered in real mode (use {PlatformNames.ModeName(natural)} or auto)");
                if (elf.Bits == 64 && mode != CpuMode.Long)
                    throw Error("cpu.mode", $"'{image.Origin}' is ELF64: it is entered in long mode (use long or auto), not {modeText}");
                break;
            }
            case PlatformNames.FormatMultiboot:
            {
                try
                {
                    var header = Multiboot.RequireHeader(image.Bytes);
                    Multiboot.PlanKernel(image.Bytes, header);
                }
                catch (BootImageException e) { throw Error(imageKey, $"'{image.Origin}' is not a loadable Multiboot kernel: {e.Message}"); }
                mode = modeText == "auto" ? CpuMode.Protected : ParseMode(modeText);
                if (mode != CpuMode.Protected)
                    throw Error("cpu.mode", $"a Multiboot kernel is entered in 32-bit protected mode (Multiboot spec 3.2); use protected or auto, not {modeText}");
                break;
            }
            default:
                mode = modeText == "auto" ? CpuMode.Real : ParseMode(modeText);
                break;
        }

        // Multiboot command line and modules.
        var cmdline = guest.HasPath("image.cmdline") ? Str(guest, "image.cmdline", "", Error) : "";
        var modules = BindModules(guest, baseDirectory, Error);
        if (format != PlatformNames.FormatMultiboot)
        {
            if (cmdline.Trim().Length > 0)
                throw Error("image.cmdline", $"a command line is passed only to Multiboot kernels (image.format = multiboot), not to a {format} image");
            if (modules.Count > 0)
                throw Error("image.modules", $"modules are passed only to Multiboot kernels (image.format = multiboot), not to a {format} image");
        }

        // irqchip, and what it implies for memory and vCPU overrides.
        var irqchip = guest.HasPath("irqchip") && Bool(guest, "irqchip", Error);
        if (irqchip)
        {
            for (var i = 0; i < memory.Count; i++)
            {
                var r = memory[i];
                foreach (var (page, what) in new[] { (PlatformNames.LocalApicAddress, "local APIC"), (PlatformNames.IoApicAddress, "IOAPIC") })
                    if (r.GuestAddress < page + GuestMemory.PageSize && page < r.GuestAddress + r.Size)
                        throw Error($"memory[{i}].address", $"region '{r.Name}' covers the {what} page at 0x{page:x}, which the in-kernel irqchip (guest.irqchip = true) needs free: leave a hole there");
            }
            if (guest.HasPath("vcpu-overrides"))
                foreach (var key in Keys(guest.GetConfig("vcpu-overrides")))
                    if (key != "0")
                        throw Error($"vcpu-overrides.{key}",
                            "with guest.irqchip = true only vCPU 0 (the boot processor) starts at the entry point; the others wait for INIT/SIPI and start at the SIPI vector, so they take no registers");
        }

        // ACPI tables: auto = with the irqchip, where RAM covers the BIOS area they go to.
        var acpiText = StrOr(guest, "acpi", "auto", Error).Trim().ToLowerInvariant();
        var acpiArea = memory.Any(r => !r.ReadOnly && r.GuestAddress <= Boot.Acpi.AcpiLayout.AreaStart && Boot.Acpi.AcpiLayout.AreaEnd <= r.GuestAddress + r.Size);
        var acpi = acpiText == "auto" ? irqchip && acpiArea : Bool(guest, "acpi", Error);

        // CPUID mask.
        var mask = new List<string>();
        var maskValue = guest.HasPath("cpuid.mask") ? guest.GetValue("cpuid.mask") : null;
        if (maskValue is not null)
        {
            var items = ListOf(maskValue) ?? throw Error("cpuid.mask", "expected a list of CPUID feature names, e.g. [\"x2apic\"]");
            foreach (var item in items)
            {
                var name = item.IsString() ? item.GetString().Trim() : "";
                if (!CpuidSetup.KnownFeatures.ContainsKey(name))
                    throw Error("cpuid.mask", $"'{(item.IsString() ? item.GetString() : item.ToString())}' is not a known CPUID feature (known: {string.Join(", ", CpuidSetup.KnownFeatures.Keys.Order())})");
                mask.Add(name);
            }
        }

        return new PlatformSpec
        {
            Mode = mode,
            Format = format,
            Irqchip = irqchip,
            Acpi = acpi,
            CpuidMask = mask,
            ProgramName = image.Path is null ? "kernel" : image.Origin,
            Cmdline = cmdline.Trim(),
            Modules = modules,
            RegionContents = BindRegionContents(guest, baseDirectory, memory, Error),
        };
    }

    private static CpuMode ParseMode(string text) => text switch
    {
        "real" => CpuMode.Real,
        "protected" => CpuMode.Protected,
        "long" => CpuMode.Long,
        _ => throw new ArgumentOutOfRangeException(nameof(text), text, "not a CPU mode"),
    };

    private static List<BootModuleSpec> BindModules(Akka.Configuration.Config guest, string baseDirectory, Func<string, string, ConfigException> error)
    {
        var list = new List<BootModuleSpec>();
        var value = guest.HasPath("image.modules") ? guest.GetValue("image.modules") : null;
        if (value is null) return list;
        var items = ListOf(value) ?? throw error("image.modules", "expected a list like [ { file = \"initrd.img\", cmdline = \"...\" } ]");
        var i = 0;
        foreach (var item in items)
        {
            var key = $"image.modules[{i}]";
            if (!item.IsObject()) throw error(key, "expected { file = \"...\", cmdline = \"...\" } (or inline = \"hex\" instead of file)");
            var c = item.ToConfig();
            var (data, origin, _) = Content(c, baseDirectory, key + ".", error)
                                    ?? throw error(key, "give exactly one of file or inline");
            var args = c.HasPath("cmdline") ? Str(c, "cmdline", key + ".", error).Trim() : "";
            var name = c.HasPath("file") ? origin : "module";
            list.Add(new BootModuleSpec(args.Length > 0 ? $"{name} {args}" : name, data, origin));
            i++;
        }
        return list;
    }

    private static List<RegionContentSpec> BindRegionContents(Akka.Configuration.Config guest, string baseDirectory,
        IReadOnlyList<MemoryRegionSpec> memory, Func<string, string, ConfigException> error)
    {
        var list = new List<RegionContentSpec>();
        var value = guest.GetValue("memory");
        if (value is null || !value.IsArray()) return list;
        var i = 0;
        foreach (var item in value.GetArray())
        {
            if (i >= memory.Count) break;
            if (item.IsObject())
            {
                var prefix = $"memory[{i}].";
                var content = Content(item.ToConfig(), baseDirectory, prefix, error);
                if (content is { } c)
                {
                    var region = memory[i];
                    if ((ulong)c.Data.Length > region.Size)
                        throw error(prefix + c.Key, $"'{c.Origin}' is {c.Data.Length} bytes, larger than region '{region.Name}' (0x{region.Size:x} bytes)");
                    list.Add(new RegionContentSpec(region.Name, region.GuestAddress, c.Data, c.Origin));
                }
            }
            i++;
        }
        return list;
    }

    /// <summary>The bytes of a <c>file</c> (relative to the config file) or <c>inline</c> (hex) key, or null if neither is given.</summary>
    private static (byte[] Data, string Origin, string Key)? Content(Akka.Configuration.Config c, string baseDirectory, string prefix,
        Func<string, string, ConfigException> error)
    {
        var hasFile = c.HasPath("file");
        var hasInline = c.HasPath("inline");
        if (!hasFile && !hasInline) return null;
        if (hasFile && hasInline) throw error(prefix + "file", "give file or inline, not both");
        if (hasInline)
        {
            var hex = Str(c, "inline", prefix, error);
            var digits = new string(hex.Where(ch => !char.IsWhiteSpace(ch) && ch != ',').ToArray());
            if (digits.Length % 2 != 0 || !digits.All(char.IsAsciiHexDigit))
                throw error(prefix + "inline", "expected hex bytes like \"ba f8 03 ...\"");
            return (Convert.FromHexString(digits), "inline", "inline");
        }
        var rel = Str(c, "file", prefix, error);
        var path = Path.Combine(baseDirectory, rel);
        if (!File.Exists(path)) throw error(prefix + "file", $"'{rel}' not found (looked in {path})");
        return (File.ReadAllBytes(path), rel, "file");
    }

    private static string Str(Akka.Configuration.Config c, string key, string prefix, Func<string, string, ConfigException> error)
    {
        try
        {
            var v = c.GetValue(key);
            if (v is null || !v.IsString()) throw error(prefix + key, "expected a value");
            return v.GetString();
        }
        catch (ConfigException) { throw; }
        catch (Exception e) { throw error(prefix + key, e.Message); }
    }

    private static string StrOr(Akka.Configuration.Config c, string key, string fallback, Func<string, string, ConfigException> error) =>
        c.HasPath(key) ? Str(c, key, "", error) : fallback;

    private static bool Bool(Akka.Configuration.Config c, string key, Func<string, string, ConfigException> error) =>
        Str(c, key, "", error).Trim().ToLowerInvariant() switch
        {
            "true" or "on" or "yes" => true,
            "false" or "off" or "no" => false,
            var other => throw error(key, $"'{other}' is not a boolean (true, false)"),
        };

    /// <summary>The items of a HOCON list; an empty list <c>[]</c> reads as empty. Null when the value is not a list.</summary>
    private static IReadOnlyList<Akka.Configuration.Hocon.HoconValue>? ListOf(Akka.Configuration.Hocon.HoconValue value)
    {
        if (value.IsArray()) return value.GetArray().ToList();
        // Akka's parser keeps the whitespace after an empty "[]" as a second value, so IsArray() says no.
        if (value.Values.Any(v => v is Akka.Configuration.Hocon.HoconArray) &&
            value.Values.All(v => v is Akka.Configuration.Hocon.HoconArray || (v is Akka.Configuration.Hocon.HoconLiteral l && string.IsNullOrWhiteSpace(l.Value))))
            return value.GetArray().ToList();
        return value.IsEmpty ? [] : null;
    }

    private static IEnumerable<string> Keys(Akka.Configuration.Config c) =>
        c.IsEmpty ? [] : c.Root.GetObject().Items.Keys;
}

using KvmActors.Runtime.Boot;
using KvmActors.Runtime.Memory;

namespace KvmActors.Runtime.Config;

/// <summary>
/// Binds the boot-platform keys of a guest config: <c>cpu.mode</c>, <c>image.format</c>, <c>image.cmdline</c>,
/// <c>image.modules</c>, <c>irqchip</c> and <c>cpuid.mask</c>, and checks the entry point against the mode
/// (what CpuSetup would reject at start is a config error here). Every error names <c>guest.KEY</c> and its source.
/// </summary>
public static class PlatformConfig
{
    /// <param name="guest">The merged guest block (file, overrides, defaults).</param>
    /// <param name="memory">The memory regions in config order (index i is <c>memory[i]</c>).</param>
    /// <param name="contents">The regions' initial contents, bound with them.</param>
    public static PlatformSpec Bind(ConfigSection guest, int vcpus, IReadOnlyList<MemoryRegionSpec> memory,
        IReadOnlyList<RegionContentSpec> contents, ImageSpec image, bool restoring = false)
    {
        var imageSection = guest.GetSection("image");
        var cpuSection = guest.GetSection("cpu");
        var imageKey = image.Path is null ? "inline" : "file";

        // Multiboot command line and modules (their files are checked first, as the image's were).
        var cmdline = imageSection.GetString("cmdline", "");
        var ram = (ulong)memory.Where(r => !r.ReadOnly).Sum(r => (decimal)r.Size);
        var modules = BindModules(imageSection, ram, restoring);

        // Image format and the mode it implies.
        var format = image.Format;
        var modeText = cpuSection.GetEnum("mode", PlatformNames.Modes, "auto", "a CPU mode");

        CpuMode mode;
        switch (format)
        {
            case PlatformNames.FormatElf:
            {
                ElfImage elf;
                if (restoring) { mode = modeText == "auto" ? CpuMode.Protected : ParseMode(modeText); break; } // the image is in memory, not read
                try { elf = ImageLoader.ParseElf(image.Bytes); }
                catch (BootImageException e) { throw imageSection.Error(imageKey, $"'{image.Origin}' is not a loadable ELF executable: {e.Message}"); }
                var natural = elf.Bits == 64 ? CpuMode.Long : CpuMode.Protected;
                mode = modeText == "auto" ? natural : ParseMode(modeText);
                if (mode == CpuMode.Real)
                    throw cpuSection.Error("mode", $"an ELF{elf.Bits} image cannot be entered in real mode (use {PlatformNames.ModeName(natural)} or auto)");
                if (elf.Bits == 64 && mode != CpuMode.Long)
                    throw cpuSection.Error("mode", $"'{image.Origin}' is ELF64: it is entered in long mode (use long or auto), not {modeText}");
                if (mode == CpuMode.Protected && elf.PhysicalEntry > uint.MaxValue)
                    throw imageSection.Error(imageKey, $"'{image.Origin}' enters at 0x{elf.PhysicalEntry:x}, above 4 GiB, which protected mode cannot reach");
                break;
            }
            case PlatformNames.FormatMultiboot:
            {
                if (restoring) { mode = CpuMode.Protected; break; }
                try
                {
                    var header = Multiboot.RequireHeader(image.Bytes);
                    Multiboot.PlanKernel(image.Bytes, header);
                }
                catch (BootImageException e) { throw imageSection.Error(imageKey, $"'{image.Origin}' is not a loadable Multiboot kernel: {e.Message}"); }
                mode = modeText == "auto" ? CpuMode.Protected : ParseMode(modeText);
                if (mode != CpuMode.Protected)
                    throw cpuSection.Error("mode", $"a Multiboot kernel is entered in 32-bit protected mode (Multiboot spec 3.2); use protected or auto, not {modeText}");
                break;
            }
            default:
                mode = modeText == "auto" ? CpuMode.Real : ParseMode(modeText);
                // A flat image is entered at its load address: the mode must reach it (one outside RAM is
                // reported by the loader, which names the regions).
                var inRam = memory.Any(r => image.LoadAddress >= r.GuestAddress && image.LoadAddress - r.GuestAddress < r.Size);
                if (inRam && mode == CpuMode.Real && image.LoadAddress >= 0x100000)
                    throw imageSection.Error("load-address", $"0x{image.LoadAddress:x} is at or above 1 MiB, which real mode (guest.cpu.mode = {modeText}) cannot reach: load below 0x100000 or use cpu.mode = protected or long");
                if (inRam && mode == CpuMode.Protected && image.LoadAddress > uint.MaxValue)
                    throw imageSection.Error("load-address", $"0x{image.LoadAddress:x} is above 4 GiB, which protected mode cannot reach: use cpu.mode = long");
                break;
        }

        if (format != PlatformNames.FormatMultiboot)
        {
            if (cmdline.Trim().Length > 0)
                throw imageSection.Error("cmdline", $"a command line is passed only to Multiboot kernels (image.format = multiboot), not to a {format} image");
            if (modules.Count > 0)
                throw imageSection.Error("modules", $"modules are passed only to Multiboot kernels (image.format = multiboot), not to a {format} image");
        }

        // irqchip, and what it implies for memory and vCPU overrides.
        // true: KVM's whole irqchip; split: local APICs in the kernel, IOAPIC/PIC as devices (guest.devices).
        var irqchipText = guest.GetEnum("irqchip", ["true", "false", "on", "off", "yes", "no", "split"], "false", "a boolean or split");
        var split = irqchipText == "split";
        var irqchip = split || irqchipText is "true" or "on" or "yes";
        if (irqchip)
        {
            for (var i = 0; i < memory.Count; i++)
            {
                var r = memory[i];
                foreach (var (page, what) in new[] { (PlatformNames.LocalApicAddress, "local APIC"), (PlatformNames.IoApicAddress, "IOAPIC") })
                    if (r.GuestAddress < page + GuestMemory.PageSize && page < r.GuestAddress + r.Size)
                        throw guest.Error($"memory[{i}].address", $"region '{r.Name}' covers the {what} page at 0x{page:x}, which the irqchip (guest.irqchip = {irqchipText}) needs free: leave a hole there");
            }
            var overrides = guest.GetSection("vcpu-overrides");
            foreach (var key in overrides.Keys)
                if (key != "0")
                    throw overrides.Error(key,
                        "with guest.irqchip = true only vCPU 0 (the boot processor) starts at the entry point; the others wait for INIT/SIPI and start at the SIPI vector, so they take no registers");
        }

        // ACPI tables: auto = with the irqchip, where RAM covers the BIOS area they go to.
        var acpiText = guest.GetEnum("acpi", ["auto", "true", "false", "on", "off", "yes", "no"], "auto", "auto or a boolean");
        var acpiArea = memory.Any(r => !r.ReadOnly && r.GuestAddress <= Boot.Acpi.AcpiLayout.AreaStart && Boot.Acpi.AcpiLayout.AreaEnd <= r.GuestAddress + r.Size);
        var acpi = acpiText == "auto" ? irqchip && acpiArea : acpiText is "true" or "on" or "yes";

        // CPUID: the model, its overrides, features on and off, the mask.
        var cpuid = guest.GetSection("cpuid");
        var mask = cpuid.GetStringList("mask").Select(item => CpuidFeatures.Canonical(item) is not null
            ? item.Trim()
            : throw cpuid.Error("mask", UnknownFeature(item))).ToList();
        var cpuidSpec = BindCpuid(cpuid);
        // The mask is the older spelling of -NAME in features.
        cpuidSpec = cpuidSpec with { Remove = [.. cpuidSpec.Remove, .. mask.Select(m => CpuidFeatures.Canonical(m)!).Except(cpuidSpec.Remove)] };
        var bootTables = cpuSection.GetEnum("boot-tables", ["auto", "none"], "auto", "auto or none") == "auto";
        if (!bootTables && mode == CpuMode.Long)
        {
            // Without the VMM's page tables a long-mode entry has only the guest's: every vCPU that starts at the entry needs CR3.
            var overrides = guest.GetSection("vcpu-overrides");
            var starting = irqchip ? 1 : vcpus;
            if (!cpuSection.GetSection("registers").Has("cr3") &&
                Enumerable.Range(0, starting).Any(i => !overrides.GetSection(i.ToString(System.Globalization.CultureInfo.InvariantCulture)).GetSection("registers").Has("cr3")))
                throw cpuSection.Error("registers.cr3",
                    "long mode with cpu.boot-tables = none needs cr3 (and the page tables it points at, in the image or a memory region's contents): the VMM writes no page tables");
        }

        return new PlatformSpec
        {
            Mode = mode,
            Format = format,
            Irqchip = irqchip,
            SplitIrqchip = split,
            Acpi = acpi,
            CpuidMask = mask,
            Cpuid = cpuidSpec,
            BootTables = bootTables,
            ProgramName = image.Path is null ? "kernel" : image.Origin,
            Cmdline = cmdline.Trim(),
            Modules = modules,
            RegionContents = contents,
        };
    }

    /// <summary>An unknown feature name, with the names that look like it.</summary>
    private static string UnknownFeature(string name)
    {
        var n = name.Trim().Replace('_', '-');
        var near = CpuidFeatures.Names.Where(k => n.Length >= 3 && (k.Contains(n, StringComparison.OrdinalIgnoreCase) ||
            k.StartsWith(n[..3], StringComparison.OrdinalIgnoreCase))).Take(6).ToList();
        return $"'{name}' is not a known CPUID feature{(near.Count > 0 ? $" (did you mean {string.Join(", ", near)}?)" : "")}: " +
               "names are QEMU's -cpu names for leaves 1, 7, 0x80000001 and 0xd.1 (see the README's CPU model section)";
    }

    private static CpuidSpec BindCpuid(ConfigSection c)
    {
        var modelText = c.GetString("model", CpuModels.Host);
        var model = CpuModels.Find(modelText) ?? throw c.Error("model", $"'{modelText}' is not a CPU model (known: {string.Join(", ", CpuModels.Names)})");
        var vendor = c.GetString("vendor", "");
        if (vendor.Length > 0 && (vendor.Length != 12 || !vendor.All(ch => ch is >= ' ' and <= '~')))
            throw c.Error("vendor", $"'{vendor}' must be 12 printable ASCII characters (CPUID leaf 0 EBX, EDX, ECX), e.g. GenuineIntel or AuthenticAMD");
        var brand = c.GetString("brand", "");
        if (brand.Length > 47 || !brand.All(ch => ch is >= ' ' and <= '~'))
            throw c.Error("brand", "at most 47 printable ASCII characters (CPUID leaves 0x80000002-0x80000004)");
        var add = new List<string>();
        var remove = new List<string>();
        foreach (var item in c.GetStringList("features"))
        {
            var f = item.Trim();
            if (f.Length < 2 || f[0] is not ('+' or '-'))
                throw c.Error("features", $"'{item}' must be +NAME (add the feature) or -NAME (remove it), as in QEMU's -cpu MODEL,+x2apic,-invpcid");
            var name = CpuidFeatures.Canonical(f[1..]) ?? throw c.Error("features", UnknownFeature(f[1..]));
            (f[0] == '+' ? add : remove).Add(name);
        }
        return new CpuidSpec
        {
            Model = model,
            Vendor = vendor.Length > 0 ? vendor : null,
            Family = AutoNumber(c, "family", 0xff + 0xf),
            ModelNumber = AutoNumber(c, "model-number", 0xff),
            Stepping = AutoNumber(c, "stepping", 0xf),
            Brand = brand.Length > 0 ? brand : null,
            Add = add,
            Remove = remove,
            Source = c.Error("features", "").File,
        };
    }

    /// <summary>auto (the model's) or a number from 0 to <paramref name="max"/>.</summary>
    private static int? AutoNumber(ConfigSection c, string key, int max) =>
        c.GetString(key, "auto") == "auto" ? null : (int)c.GetInteger(key, max: max);

    private static CpuMode ParseMode(string text) => text switch
    {
        "real" => CpuMode.Real,
        "protected" => CpuMode.Protected,
        "long" => CpuMode.Long,
        _ => throw new ArgumentOutOfRangeException(nameof(text), text, "not a CPU mode"),
    };

    /// <param name="ram">Modules are loaded into RAM: none may be larger.</param>
    private static List<BootModuleSpec> BindModules(ConfigSection image, ulong ram, bool restoring)
    {
        var list = new List<BootModuleSpec>();
        foreach (var c in image.GetObjectList("modules", "{ file = \"...\", cmdline = \"...\" } (or inline = \"hex\" instead of file)"))
        {
            var (data, origin, _) = GuestConfigLoader.Content.Read(c, ram, "the guest's RAM", restoring) ?? throw c.Error("give exactly one of file or inline");
            var args = c.GetString("cmdline", "").Trim();
            var name = c.Has("file") ? origin : "module";
            list.Add(new BootModuleSpec(args.Length > 0 ? $"{name} {args}" : name, data, origin));
        }
        return list;
    }
}

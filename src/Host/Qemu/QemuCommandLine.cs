using System.Globalization;
using System.Text;

namespace KvmActors.Host.Qemu;

/// <summary>A QEMU command line we cannot take: QEMU's message style, and its exit status for a bad command line (1).</summary>
public sealed class QemuUsageException(string message) : Exception(message);

/// <summary>What a QEMU command line asked for, before it becomes a guest file.</summary>
public sealed record QemuInvocation
{
    public string? Kernel { get; init; }
    public string Append { get; init; } = "";
    public string? Initrd { get; init; }
    public int Smp { get; init; } = 1;
    public ulong MemoryBytes { get; init; } = 128UL << 20; // QEMU's default -m
    public string Serial { get; init; } = "stdio";
    public (ushort Base, int Size)? DebugExit { get; init; }
    public bool PcTestdev { get; init; }
    public bool PciTestdev { get; init; }
    /// <summary>-machine q35: the Q35 host bridge (8086:29c0) instead of the 440FX.</summary>
    public bool Q35 { get; init; }
    /// <summary>-machine kernel-irqchip=split: guest.irqchip = split, a userspace IOAPIC and PICs.</summary>
    public bool SplitIrqchip { get; init; }
    /// <summary>-device intel-iommu: a VT-d unit at 0xfed90000.</summary>
    public bool IntelIommu { get; init; }
    /// <summary>intel-iommu's intremap=on|off; null (auto, as QEMU): on with kernel-irqchip=split.</summary>
    public bool? Intremap { get; init; }
    /// <summary>What intremap comes to.</summary>
    public bool InterruptRemapping => Intremap ?? SplitIrqchip;
    /// <summary>-device edu: QEMU's educational PCI device.</summary>
    public bool Edu { get; init; }
    public string Name { get; init; } = "qemu";
    /// <summary>-cpu MODEL,+f,-f,...: the guest.cpuid lines it maps to (<see cref="Runtime.Config.QemuCpuOption"/>).</summary>
    public IReadOnlyList<string> Cpuid { get; init; } = [];
    /// <summary>-s or -gdb DEV: where the gdb stub listens (guest.gdb.listen), null without one.</summary>
    public string? Gdb { get; init; }
    /// <summary>-gdb tcp:HOST:PORT with a HOST that is not loopback: QEMU listens there, so guest.gdb.allow-remote.</summary>
    public bool GdbRemote { get; init; }
    /// <summary>-S: no vCPU runs before gdb continues (guest.gdb.wait).</summary>
    public bool GdbWait { get; init; }
    /// <summary>-help, -version or -device help: print this and exit 0 without running anything.</summary>
    public string? Print { get; init; }
}

/// <summary>
/// The subset of QEMU's command line that test-kernel harnesses use (kvm-unit-tests' x86/run among them),
/// mapped onto a KvmActors guest file: <see cref="Parse"/> reads it, <see cref="ToHocon"/> writes the guest.
/// </summary>
public static class QemuCommandLine
{
    public const string Version = "QEMU emulator version 8.2.0 (kvmactors qemu)";

    public const string Help = Version + """

        usage: kvmactors-qemu [options] -kernel FILE
        KvmActors understands this subset of QEMU's options:
          -kernel FILE        a Multiboot kernel (kvm-unit-tests' .flat files)
          -append STRING      the kernel's command line
          -initrd FILE        the first Multiboot module
          -smp N[,...]        vCPUs (maxcpus, sockets... accepted)
          -m SIZE[M|G]        RAM (default 128M)
          -device isa-debug-exit[,iobase=0xf4][,iosize=N]
          -device pc-testdev | pci-testdev | edu (PCI devices on the host bridge's bus 0, slots from 1)
          -device intel-iommu[,intremap=on|off][,eim=off] (q35 only; intremap=on needs kernel-irqchip=split;
                              eim=on is an error: x2APIC interrupt remapping is not built)
          -serial stdio|none|file:PATH
          -display none, -nographic, -nodefaults, -no-reboot, --no-reboot
          -machine [pc|q35][,accel=kvm][,pit=on|off][,kernel-irqchip=on|split] (other accelerators are an error;
                              kernel-irqchip=off is: userspace local APICs are not built), -accel kvm, -enable-kvm
          -global kvm-pit.lost_tick_policy=... (accepted), -name NAME
          -cpu MODEL[,+F][,-F][,F=on|off][,vendor=V][,family=N][,model=N][,stepping=N]
                              host, max, qemu64, kvm64, qemu32, kvm32, Nehalem; +F must be supported by KVM
          -s (-gdb tcp::1234), -gdb tcp:[HOST]:PORT|unix:PATH|none, -S (wait for gdb's continue; needs -s or -gdb)
          -version, -help, -device help
        an unknown option is an error naming it; exit status 1, as QEMU's for a bad command line

        """;

    /// <summary>The device list QEMU prints for -device help (kvm-unit-tests' x86/run greps it).</summary>
    public const string DeviceList = """
        Misc devices:
        name "isa-debug-exit", bus ISA
        name "pc-testdev", bus ISA
        name "pci-testdev", bus PCI, desc "PCI Test Device"
        name "edu", bus PCI
        name "intel-iommu", bus System, desc "Intel IOMMU (VT-d) DMA Remapping device"

        """;

    public static QemuInvocation Parse(IReadOnlyList<string> args)
    {
        var q = new QemuInvocation();
        for (var i = 0; i < args.Count; i++)
        {
            var raw = args[i];
            // QEMU takes -opt and --opt alike, and -opt=value is not QEMU syntax: keep the token whole.
            var opt = raw.StartsWith("--") ? raw[1..] : raw;
            string Next() => i + 1 < args.Count ? args[++i] : throw new QemuUsageException($"{raw}: requires an argument");
            switch (opt)
            {
                case "-h" or "-help":
                    return q with { Print = Help };
                case "-version":
                    return q with { Print = Version + "\n" };
                case "-kernel": q = q with { Kernel = Next() }; break;
                case "-append": q = q with { Append = Next() }; break;
                case "-initrd": q = q with { Initrd = Next() }; break;
                case "-smp": q = q with { Smp = ParseSmp(Next()) }; break;
                case "-m": q = q with { MemoryBytes = ParseMemory(Next()) }; break;
                case "-name": q = q with { Name = Next().Split(',')[0] }; break;
                case "-serial": q = q with { Serial = ParseSerial(Next()) }; break;
                case "-display":
                    var display = Next();
                    if (display != "none") throw new QemuUsageException($"-display {display}: only -display none is supported");
                    break;
                case "-nographic" or "-nodefaults" or "-no-reboot" or "-enable-kvm": break;
                case "-s": q = q with { Gdb = "tcp::1234", GdbRemote = false }; break;
                case "-gdb": q = ParseGdb(q, Next()); break;
                case "-S": q = q with { GdbWait = true }; break;
                case "-machine" or "-M": q = ParseMachine(q, Next()); break;
                case "-accel":
                    var accel = Next();
                    if (accel.Split(',')[0] != "kvm") throw new QemuUsageException($"-accel {accel}: only the kvm accelerator is supported");
                    break;
                case "-cpu":
                    var cpu = Next();
                    try { q = q with { Cpuid = Runtime.Config.QemuCpuOption.ToHocon(cpu) }; }
                    catch (FormatException e) { throw new QemuUsageException(e.Message); }
                    break;
                case "-global":
                    var global = Next();
                    if (!global.StartsWith("kvm-pit.lost_tick_policy=")) throw new QemuUsageException($"-global {global}: not supported");
                    break;
                case "-device":
                    var device = Next();
                    if (device is "help" or "?") return q with { Print = DeviceList };
                    q = AddDevice(q, device);
                    break;
                default:
                    throw new QemuUsageException(opt.StartsWith('-') ? $"{raw}: invalid option" : $"{raw}: unexpected argument (a disk image?)");
            }
        }
        if (q.Kernel is null) throw new QemuUsageException("no -kernel given (KvmActors runs kernels, not disk images)");
        if (q.IntelIommu)
        {
            if (!q.Q35) throw new QemuUsageException("-device intel-iommu: only the q35 machine has one (-machine q35)");
            if (q.Intremap == true && !q.SplitIrqchip)
                throw new QemuUsageException("-device intel-iommu,intremap=on: interrupt remapping needs -machine kernel-irqchip=split (the kernel's IOAPIC cannot be remapped)");
        }
        if (q.GdbWait && q.Gdb is null)
            throw new QemuUsageException("-S: without -s or -gdb nothing could start the CPU (KvmActors has no monitor; gdb's continue starts it)");
        return q;
    }

    /// <summary>
    /// -gdb DEV as QEMU's chardev: tcp::PORT (loopback here; QEMU listens on every address), tcp:HOST:PORT (a host
    /// other than loopback is what the user asked QEMU for, so allowed), unix:PATH[,server=on,...] (the options are
    /// QEMU's defaults for -gdb and dropped), none.
    /// </summary>
    private static QemuInvocation ParseGdb(QemuInvocation q, string dev)
    {
        if (dev == "none") return q with { Gdb = null, GdbRemote = false };
        var address = dev.Split(',')[0];
        if (address.StartsWith("unix:") && address.Length > 5) return q with { Gdb = address, GdbRemote = false };
        if (address.StartsWith("tcp:") && address.LastIndexOf(':') is var colon and > 3
            && ushort.TryParse(address[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out _))
        {
            var host = address[4..colon];
            return q with { Gdb = address, GdbRemote = host is not ("" or "localhost" or "127.0.0.1" or "::1" or "[::1]") };
        }
        throw new QemuUsageException($"-gdb {dev}: supported are tcp:[HOST]:PORT, unix:PATH and none");
    }

    private static QemuInvocation ParseMachine(QemuInvocation q, string value)
    {
        foreach (var part in value.Split(','))
        {
            var (key, val) = part.Contains('=') ? (part[..part.IndexOf('=')], part[(part.IndexOf('=') + 1)..]) : ("type", part);
            switch (key)
            {
                case "accel" when val.Split(':').Contains("kvm"):
                    break;
                case "accel":
                    throw new QemuUsageException($"-machine accel={val}: only the kvm accelerator is supported");
                case "type" when val is "q35" || val.StartsWith("pc-q35"):
                    q = q with { Q35 = true };
                    break;
                case "type" when val is "pc" or "pc-i440fx" || val.StartsWith("pc-"):
                    q = q with { Q35 = false };
                    break;
                case "kernel-irqchip" when val is "on" or "split":
                    q = q with { SplitIrqchip = val == "split" };
                    break;
                case "kernel-irqchip":
                    throw new QemuUsageException($"-machine {part}: only on and split (the local APICs are always KVM's)");
                // No firmware runs here, so nothing programs the in-kernel PIT: it stays as quiet as QEMU's pit=off
                // (kvm-unit-tests' vmexit_ipi asks for that so no timer tick disturbs the IPI measurement).
                case "pit" when val is "on" or "off":
                    break;
                default:
                    throw new QemuUsageException($"-machine {part}: not supported");
            }
        }
        return q;
    }

    private static int ParseSmp(string value)
    {
        var first = value.Split(',')[0];
        if (first.StartsWith("cpus=")) first = first[5..];
        if (!int.TryParse(first, NumberStyles.None, CultureInfo.InvariantCulture, out var n) || n is < 1 or > 255)
            throw new QemuUsageException($"-smp {value}: expected a CPU count from 1 to 255");
        return n;
    }

    public static ulong ParseMemory(string value)
    {
        var text = value.StartsWith("size=") ? value[5..].Split(',')[0] : value.Split(',')[0];
        var multiplier = 1UL << 20; // a bare number is MiB, as QEMU takes it
        switch (char.ToUpperInvariant(text.Length > 0 ? text[^1] : ' '))
        {
            case 'K': multiplier = 1UL << 10; text = text[..^1]; break;
            case 'M': text = text[..^1]; break;
            case 'G': multiplier = 1UL << 30; text = text[..^1]; break;
        }
        if (!ulong.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var n) || n == 0)
            throw new QemuUsageException($"-m {value}: expected a size like 128M or 1G");
        var bytes = checked(n * multiplier);
        if (bytes % 4096 != 0 || bytes < 2UL << 20 || bytes > 3UL << 30)
            throw new QemuUsageException($"-m {value}: KvmActors' QEMU mode takes 2M to 3G of RAM in whole pages");
        return bytes;
    }

    private static string ParseSerial(string value) => value switch
    {
        "stdio" or "mon:stdio" => "stdio",
        "none" or "null" => "none",
        _ when value.StartsWith("file:") && value.Length > 5 => value,
        _ => throw new QemuUsageException($"-serial {value}: supported are stdio, none and file:PATH"),
    };

    private static QemuInvocation AddDevice(QemuInvocation q, string spec)
    {
        var parts = spec.Split(',');
        var props = parts.Skip(1).Select(p => p.Split('=', 2)).ToDictionary(p => p[0], p => p.Length > 1 ? p[1] : "on");
        switch (parts[0])
        {
            case "isa-debug-exit":
                var iobase = props.TryGetValue("iobase", out var b) ? ParseNumber(b, "iobase", spec) : 0x501;
                var iosize = props.TryGetValue("iosize", out var s) ? ParseNumber(s, "iosize", spec) : 1;
                foreach (var key in props.Keys.Except(["iobase", "iosize"]))
                    throw new QemuUsageException($"-device {spec}: property '{key}' not supported");
                if (iobase > 0xffff || iosize is < 1 or > 4 || iobase + iosize > 0x10000)
                    throw new QemuUsageException($"-device {spec}: iobase/iosize out of range");
                return q with { DebugExit = ((ushort)iobase, (int)iosize) };
            case "pc-testdev" when props.Count == 0:
                return q with { PcTestdev = true };
            case "pci-testdev" when props.Count == 0:
                return q with { PciTestdev = true };
            case "edu" when props.Count == 0:
                return q with { Edu = true };
            case "edu" or "pc-testdev" or "pci-testdev":
                throw new QemuUsageException($"-device {spec}: '{parts[0]}' takes no properties here ('{props.Keys.First()}')");
            case "intel-iommu":
                foreach (var key in props.Keys.Except(["intremap", "eim"]))
                    throw new QemuUsageException($"-device {spec}: property '{key}' not supported");
                bool? ir = props.TryGetValue("intremap", out var irText) && irText != "auto" ? OnOff(irText, "intremap", spec) : null;
                if (props.TryGetValue("eim", out var eimText) && OnOff(eimText, "eim", spec))
                    throw new QemuUsageException($"-device {spec}: eim=on (x2APIC interrupt remapping) is not built; use eim=off");
                return q with { IntelIommu = true, Intremap = ir };
            default:
                throw new QemuUsageException($"-device {spec}: '{parts[0]}' is not a device KvmActors provides (see -device help)");
        }
    }

    private static bool OnOff(string text, string what, string spec) => text switch
    {
        "on" or "true" or "yes" => true,
        "off" or "false" or "no" => false,
        _ => throw new QemuUsageException($"-device {spec}: {what}={text}: expected on or off"),
    };

    private static long ParseNumber(string text, string what, string spec)
    {
        var ok = text.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
            ? long.TryParse(text[2..], NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var v)
            : long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out v);
        return ok ? v : throw new QemuUsageException($"-device {spec}: {what}={text} is not a number");
    }

    /// <summary>
    /// The guest file for <paramref name="q"/>: a Multiboot kernel on a PC-like machine (in-kernel irqchip,
    /// ACPI, RAM from 0 up to -m with the IOAPIC/local APIC pages free), COM1, fw_cfg, CMOS/RTC, the ACPI PM
    /// block, a PCI host bridge, and the devices asked for. Paths are made absolute against <paramref name="cwd"/>.
    /// </summary>
    public static string ToHocon(QemuInvocation q, string cwd)
    {
        static string Quote(string s) => "\"" + s.Replace("\\", "\\\\").Replace("\"", "\\\"").Replace("\n", "\\n") + "\"";
        string Abs(string p) => Path.GetFullPath(p, cwd);
        var sb = new StringBuilder();
        sb.AppendLine("guest {");
        sb.AppendLine($"  name = {Quote(q.Name)}");
        sb.AppendLine($"  vcpus = {q.Smp}");
        sb.AppendLine(q.SplitIrqchip ? "  irqchip = split" : "  irqchip = true");
        sb.AppendLine("  acpi = true");
        foreach (var line in q.Cpuid) sb.AppendLine($"  {line}");
        sb.AppendLine("  memory = [");
        sb.AppendLine($"    {{ name = ram, address = 0, size = {q.MemoryBytes} }}");
        sb.AppendLine("  ]");
        sb.AppendLine("  image {");
        sb.AppendLine("    format = multiboot");
        sb.AppendLine($"    file = {Quote(Abs(q.Kernel!))}");
        sb.AppendLine($"    cmdline = {Quote(q.Append)}");
        if (q.Initrd is { } initrd)
        {
            sb.AppendLine("    modules = [");
            sb.AppendLine($"      {{ file = {Quote(Abs(initrd))}, cmdline = \"\" }}");
            sb.AppendLine("    ]");
        }
        sb.AppendLine("  }");
        if (q.Gdb is { } gdb)
            sb.AppendLine($"  gdb {{ listen = {Quote(gdb)}, wait = {(q.GdbWait ? "true" : "false")}, allow-remote = {(q.GdbRemote ? "true" : "false")} }}");
        sb.AppendLine("  devices {");
        var sink = q.Serial switch { "stdio" => "stdout", "none" => "null", var f => Quote("file:" + Abs(f[5..])) };
        sb.AppendLine($"    com1.options.sink = {sink}");
        Device(sb, "fw-cfg", "fw-cfg", ["0x510-0x511"]);
        Device(sb, "rtc", "cmos-rtc", ["0x70-0x71"]);
        Device(sb, "acpi-pm", "acpi-pm", ["0x600-0x60b"], options: "on-suspend = resume"); // QEMU wakes from S3
        if (q.SplitIrqchip)
        {
            // The kernel keeps the local APICs; the IOAPIC (where the MADT says) and the PICs are devices.
            Device(sb, "ioapic", "ioapic", [], ["0xfec00000-0xfec00fff"]);
            Device(sb, "pic", "i8259", ["0x20-0x21", "0xa0-0xa1"]);
        }
        Device(sb, "pci", "pci-host", ["0xcf8-0xcff"], options: q.Q35 ? "chipset = q35" : null);
        if (q.IntelIommu)
            Device(sb, "iommu", "intel-iommu", [], ["0xfed90000-0xfed90fff"], $"intremap = {(q.InterruptRemapping ? "true" : "false")}");
        if (q.DebugExit is { } exit)
            Device(sb, "debug-exit", "debug-exit", [$"0x{exit.Base:x}-0x{exit.Base + exit.Size - 1:x}"]);
        if (q.PcTestdev)
            Device(sb, "pc-testdev", "pc-testdev", ["0xe0-0xeb", "0x2000-0x2017"], ["0xff000000-0xff00ffff"]);
        if (q.PciTestdev) sb.AppendLine("    pci-testdev.type = pci-testdev");
        if (q.Edu) sb.AppendLine("    edu.type = edu");
        sb.AppendLine("  }");
        sb.AppendLine("}");
        return sb.ToString();
    }

    private static void Device(StringBuilder sb, string name, string type, string[] ports, string[]? mmio = null, string? options = null)
    {
        sb.AppendLine($"    {name} {{");
        sb.AppendLine($"      type = {type}");
        if (ports.Length > 0) sb.AppendLine($"      ports = [{string.Join(", ", ports.Select(p => $"\"{p}\""))}]");
        if (mmio is not null) sb.AppendLine($"      mmio = [{string.Join(", ", mmio.Select(p => $"\"{p}\""))}]");
        if (options is not null) sb.AppendLine($"      options {{ {options} }}");
        sb.AppendLine("    }");
    }
}

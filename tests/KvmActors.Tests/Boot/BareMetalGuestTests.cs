using System.Diagnostics;
using System.Text.Json.Nodes;
using KvmActors.Runtime.Boot;
using KvmActors.Runtime.Config;
using KvmActors.Runtime.Kvm;
using KvmActors.Tests.Support;
using Xunit;

namespace KvmActors.Tests.Boot;

/// <summary>
/// kvm-hello-world-style guests (images linked at address 0, built here with as/ld) run from guest files with
/// cpu.boot-tables = none and the entry state the file gives, in each mode; a CPUID-reading guest shows the CPU
/// model options taking effect; the end report carries the special registers and --report-memory's bytes.
/// </summary>
public sealed class BareMetalGuestTests
{
    /// <summary>
    /// kvm-hello-world's guest, per mode: print a line through debugcon (0xe9), store 42 at 0x400, halt
    /// (the long-mode one also pushes, to show its stack works). <paramref name="load"/> points SI at the message.
    /// </summary>
    private static string Hello(string code, string load, string store, string mode) => $$"""
                {{code}}
                .globl _start
        _start: {{load}}
        1:      lodsb
                test %al, %al
                jz 2f
                outb %al, $0xe9
                jmp 1b
        2:      {{store}}
                hlt
        msg:    .asciz "Hello, world! ({{mode}} mode)\n"
        """;

    private static readonly string Real = Hello(".code16", "mov $msg, %si", "movw $42, 0x400", "real");
    private static readonly string Protected = Hello(".code32", "mov $msg, %esi", "movl $42, 0x400", "protected");
    private static readonly string Long = Hello(".code64", "lea msg(%rip), %rsi", "movq $42, 0x400\n        push $0x2a", "long");

    /// <summary>
    /// Prints CPUID leaf 0's vendor string, then leaf 1 EAX (the signature) and ECX (features) in hex, on port 0xe9;
    /// 32-bit code linked at 0.
    /// </summary>
    private const string CpuidReader = """
                .code32
                .globl _start
        _start: xor %eax, %eax
                cpuid
                mov %ebx, %eax
                call out4
                mov %edx, %eax
                call out4
                mov %ecx, %eax
                call out4
                mov $' ', %al
                outb %al, $0xe9
                mov $1, %eax
                cpuid
                push %ecx
                call hex8
                mov $' ', %al
                outb %al, $0xe9
                pop %eax
                call hex8
                mov $'\n', %al
                outb %al, $0xe9
                hlt
        out4:   mov $4, %edi
        1:      outb %al, $0xe9
                shr $8, %eax
                dec %edi
                jnz 1b
                ret
        hex8:   mov %eax, %edx
                mov $8, %edi
        2:      rol $4, %edx
                mov %edx, %eax
                and $0xf, %eax
                mov digits(%eax), %al
                outb %al, $0xe9
                dec %edi
                jnz 2b
                ret
        digits: .ascii "0123456789abcdef"
        """;

    private static string Example(string name) => Path.Combine(RepoRoot.Path, "hocon", "guests", name);

    /// <summary>Assembles <paramref name="source"/> and links it at 0 as a flat binary, as kvm-hello-world's guest.ld does.</summary>
    private static byte[] Build(string source, int bits)
    {
        var dir = Directory.CreateTempSubdirectory("kvmactors-hello-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(dir, "g.s"), source + "\n");
            Tool(dir, "as", bits == 64 ? "--64" : "--32", "-o", "g.o", "g.s");
            Tool(dir, "ld", "-m", bits == 64 ? "elf_x86_64" : "elf_i386", "-nostdlib", "-Ttext=0", "-e", "_start", "--oformat", "binary", "-o", "g.bin", "g.o");
            return File.ReadAllBytes(Path.Combine(dir, "g.bin"));
        }
        finally { Directory.Delete(dir, true); }
    }

    private static void Tool(string dir, string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file, args) { WorkingDirectory = dir, RedirectStandardError = true, RedirectStandardOutput = true, RedirectStandardInput = true };
        var r = Kvmactors.RunProcess(psi, TimeSpan.FromSeconds(60));
        Assert.True(r.ExitCode == 0, $"{file} {string.Join(' ', args)}: {r.Stderr}");
    }

    private static JsonNode RunWithReport(string config, out Kvmactors.Result result, params string[] extra)
    {
        var report = Path.Combine(Path.GetTempPath(), $"kvmactors-report-{Guid.NewGuid():n}.json");
        try
        {
            result = Kvmactors.Run(["run", config, "--report", report, .. extra]);
            Assert.True(File.Exists(report), $"no report; exit {result.ExitCode}, stderr: {result.Stderr}");
            return JsonNode.Parse(File.ReadAllText(report))!;
        }
        finally { File.Delete(report); }
    }

    [Theory]
    [InlineData("real", 16)]
    [InlineData("protected", 32)]
    [InlineData("long", 64)]
    public void The_examples_hold_the_images_as_and_ld_build_at_address_0(string mode, int bits)
    {
        var source = mode switch { "real" => Real, "protected" => Protected, _ => Long };
        var spec = GuestConfigLoader.LoadFile(Example($"hello-at-0-{mode}.conf"));
        Assert.Equal(Build(source, bits), spec.Machine.Image.Bytes);
        Assert.Equal(0UL, spec.Machine.Image.LoadAddress);
        Assert.False(spec.Machine.Platform.BootTables);
    }

    [KvmTheory]
    [InlineData("real", "0x60000010", "0x0", "0x0")] // KVM's reset CR0 (CD, NW, ET)
    [InlineData("protected", "0x11", "0x0", "0x0")]
    [InlineData("long", "0x80050033", "0x200000", "0x500")]
    public void An_image_linked_at_0_runs_from_its_guest_file_and_the_report_has_its_special_registers_and_memory(
        string mode, string cr0, string cr3, string efer)
    {
        var json = RunWithReport(Example($"hello-at-0-{mode}.conf"), out var r, "--report-memory", "0x400:2", "--report-memory", "0:4");

        Assert.Equal(0, r.ExitCode);
        Assert.Equal($"Hello, world! ({mode} mode)\n", r.Stdout);
        // The guest stored 42 at 0x400; page 0 holds the image's first bytes (no VMM data went there).
        var memory = json["memory"]!.AsArray();
        Assert.Equal("0x400", memory[0]!["address"]!.GetValue<string>());
        Assert.Equal("2a00", memory[0]!["hex"]!.GetValue<string>());
        Assert.Equal(Convert.ToHexStringLower(GuestConfigLoader.LoadFile(Example($"hello-at-0-{mode}.conf")).Machine.Image.Bytes[..4]),
            memory[1]!["hex"]!.GetValue<string>());
        Assert.Contains("00000400  2a 00", r.Stderr); // the hex dump on stderr

        var sregs = json["vcpus"]![0]!["specialRegisters"]!;
        Assert.Equal(cr0, sregs["cr0"]!.GetValue<string>());
        Assert.Equal(cr3, sregs["cr3"]!.GetValue<string>());
        Assert.Equal(efer, sregs["efer"]!.GetValue<string>());
        var cs = sregs["cs"]!;
        Assert.Equal(mode == "long", cs["l"]!.GetValue<bool>());
        Assert.Equal(mode == "protected", cs["db"]!.GetValue<bool>());
        Assert.Equal(mode == "real" ? "0x0" : "0x8", cs["selector"]!.GetValue<string>());
        Assert.Equal(11, cs["type"]!.GetValue<int>());
        // No GDT written: GDTR is 0 (real mode: KVM's reset value, limit 0xffff).
        Assert.Equal("0x0", sregs["gdtr"]!["base"]!.GetValue<string>());
        Assert.Equal(mode == "real" ? "0xffff" : "0x0", sregs["gdtr"]!["limit"]!.GetValue<string>());
        Assert.NotNull(sregs["tr"]);
        Assert.NotNull(sregs["idtr"]);
    }

    /// <summary>A guest file running <see cref="CpuidReader"/> at 0 in protected mode, with <paramref name="cpuid"/> as its cpuid block.</summary>
    private static string CpuidGuest(string dir, string cpuid)
    {
        File.WriteAllBytes(Path.Combine(dir, "cpuid.bin"), Build(CpuidReader, 32));
        var path = Path.Combine(dir, "cpuid.conf");
        File.WriteAllText(path, $$"""
            guest {
              name = cpuid-reader
              memory = [
                { name = ram, address = 0, size = 1M }
              ]
              image {
                file = "cpuid.bin"
                load-address = 0
              }
              cpu {
                mode = protected
                boot-tables = none
                registers {
                  rsp = 0x80000
                }
              }
              cpuid {
                {{cpuid}}
              }
              devices {
                debugcon {
                  type = debugcon
                  ports = ["0xe9"]
                }
              }
            }
            """);
        return path;
    }

    private static (string Vendor, uint Eax, uint Ecx) RunCpuidGuest(string cpuid)
    {
        var dir = Directory.CreateTempSubdirectory("kvmactors-cpuid-").FullName;
        try
        {
            var r = Kvmactors.Run("run", CpuidGuest(dir, cpuid));
            Assert.True(r.ExitCode == 0, r.Stderr);
            var parts = r.Stdout.TrimEnd('\n').Split(' ');
            Assert.Equal(3, parts.Length);
            return (parts[0], Convert.ToUInt32(parts[1], 16), Convert.ToUInt32(parts[2], 16));
        }
        finally { Directory.Delete(dir, true); }
    }

    private const int X2apic = 21, TscDeadline = 24;

    [KvmFact]
    public void A_named_model_gives_its_vendor_and_signature_and_plus_minus_features_take_effect()
    {
        // qemu64 (AuthenticAMD, family 6 model 6 stepping 3) has x2apic under KVM but no tsc-deadline.
        var (vendor, eax, ecx) = RunCpuidGuest("""
            model = qemu64
                features = ["+tsc-deadline", "-x2apic"]
            """);
        Assert.Equal("AuthenticAMD", vendor);
        Assert.Equal(CpuModels.Signature(6, 6, 3), eax);
        Assert.Equal((6, 6, 3), CpuModels.Decode(eax));
        Assert.NotEqual(0u, ecx & (1u << TscDeadline));
        Assert.Equal(0u, ecx & (1u << X2apic));

        var (_, _, plain) = RunCpuidGuest("model = qemu64");
        Assert.Equal(0u, plain & (1u << TscDeadline));
        Assert.NotEqual(0u, plain & (1u << X2apic));
    }

    [KvmFact]
    public void Vendor_family_model_and_stepping_override_the_host_model()
    {
        var (vendor, eax, _) = RunCpuidGuest("""
            vendor = "KvmActorsCPU"
                family = 23
                model-number = 0x31
                stepping = 2
            """);
        Assert.Equal("KvmActorsCPU", vendor);
        Assert.Equal((23, 0x31, 2), CpuModels.Decode(eax));
        Assert.Equal(0x00830f12u, eax); // extended family 8, extended model 3, family 0xf, model 1, stepping 2
    }

    [KvmFact]
    public void A_feature_this_kvm_does_not_support_is_a_config_error_naming_the_key_the_file_and_the_feature()
    {
        using var kvm = KvmSystem.Open("/dev/kvm");
        var supported = kvm.GetSupportedCpuid();
        // The first named leaf-7 feature this host's KVM lacks (on hardware KVM too, some always are).
        var missing = CpuidFeatures.Names.First(n => CpuidFeatures.Bit(n).Leaf == 7 && !CpuidFeatures.IsSet(supported, CpuidFeatures.Bit(n)));
        var dir = Directory.CreateTempSubdirectory("kvmactors-cpuid-").FullName;
        try
        {
            var config = CpuidGuest(dir, $"features = [\"+{missing}\"]");
            var r = Kvmactors.Run("run", config);
            Assert.Equal(2, r.ExitCode);
            Assert.Contains($"{config}: guest.cpuid.features: '+{missing}'", r.Stderr);
            Assert.Contains("KVM_GET_SUPPORTED_CPUID", r.Stderr);
            Assert.Equal("", r.Stdout);

            // A 32-bit model cannot enter long mode.
            var r32 = Kvmactors.Run("run", Example("hello-at-0-long.conf"), "--set", "guest.cpuid.model = qemu32");
            Assert.Equal(2, r32.ExitCode);
            Assert.Contains("guest.cpuid.model", r32.Stderr);
            Assert.Contains("no lm", r32.Stderr);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void A_report_memory_range_outside_the_guests_memory_or_too_large_is_a_usage_error()
    {
        var outside = Kvmactors.Run("run", Example("hello-at-0-real.conf"), "--report-memory", "0x1ff000:8K");
        Assert.Equal(2, outside.ExitCode);
        Assert.Contains("--report-memory 0x1ff000:0x2000: [0x1ff000, 0x201000) is not within one of the guest's memory regions (ram [0x0, 0x200000))", outside.Stderr);
        Assert.Equal("", outside.Stdout);

        var large = Kvmactors.Run("run", Example("hello-at-0-real.conf"), "--report-memory", "0:2M");
        Assert.Equal(2, large.ExitCode);
        Assert.Contains("kvmactors.cli.report-memory-limit", large.Stderr);

        var malformed = Kvmactors.Run("run", Example("hello-at-0-real.conf"), "--report-memory", "0x400");
        Assert.Equal(2, malformed.ExitCode);
        Assert.Contains("expected ADDR:LEN", malformed.Stderr);
    }
}

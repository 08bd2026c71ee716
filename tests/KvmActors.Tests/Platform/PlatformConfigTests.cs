using KvmActors.Runtime.Boot;
using KvmActors.Runtime.Config;
using KvmActors.Tests.Boot;
using KvmActors.Tests.Support;
using Xunit;

namespace KvmActors.Tests.Platform;

/// <summary>Binding the boot-platform keys: defaults, modes per format, and errors naming the key and the file.</summary>
public sealed class PlatformConfigTests
{
    private static GuestSpec Load(string hocon, params string[] sets) =>
        GuestConfigLoader.FromText(hocon, "guests/x.conf", AppContext.BaseDirectory, sets);

    private static string Elf64Hex => Guests.Hex(PlatformGuests.Elf64Hello());
    private static string Elf32Hex => Guests.Hex(TestImages.Elf(32, 0x100000, [new TestSegment(0x100000, [0xf4])]));
    private static string MultibootHex => Guests.Hex(PlatformGuests.MultibootFlatKernel());

    [Fact]
    public void Defaults_are_a_flat_real_mode_guest_without_irqchip_or_cpuid_mask()
    {
        var spec = Load("guest { image.inline = \"f4\" }");
        Assert.Equal(CpuMode.Real, spec.Machine.Platform.Mode);
        Assert.Equal("flat", spec.Machine.Platform.Format);
        Assert.False(spec.Machine.Platform.Irqchip);
        Assert.Empty(spec.Machine.Platform.CpuidMask);
        Assert.Empty(spec.Machine.Platform.Modules);
        Assert.Equal("", spec.Machine.Platform.Cmdline);
        Assert.Empty(spec.Machine.Platform.RegionContents);
    }

    [Theory]
    [InlineData("flat", "f4", "auto", CpuMode.Real)]
    [InlineData("flat", "f4", "protected", CpuMode.Protected)]
    [InlineData("flat", "f4", "long", CpuMode.Long)]
    [InlineData("elf", "ELF64", "auto", CpuMode.Long)]
    [InlineData("elf", "ELF32", "auto", CpuMode.Protected)]
    [InlineData("elf", "ELF32", "long", CpuMode.Long)]
    [InlineData("multiboot", "MB", "auto", CpuMode.Protected)]
    [InlineData("multiboot", "MB", "protected", CpuMode.Protected)]
    public void The_mode_follows_the_format_unless_given(string format, string image, string mode, CpuMode expected)
    {
        var hex = image switch { "ELF64" => Elf64Hex, "ELF32" => Elf32Hex, "MB" => MultibootHex, _ => image };
        var spec = Load($"guest {{\n image.format = {format}\n image.inline = \"{hex}\"\n cpu.mode = {mode}\n }}");
        Assert.Equal(expected, spec.Machine.Platform.Mode);
        Assert.Equal(PlatformNames.ModeName(expected), spec.Machine.Platform.ModeName);
    }

    [Fact]
    public void Irqchip_cpuid_mask_cmdline_and_modules_bind()
    {
        using var dir = new TempDir();
        dir.Write("m.bin", [1, 2, 3]);
        var spec = GuestConfigLoader.FromText($$"""
            guest {
              irqchip = true
              cpuid.mask = ["x2apic", "XSAVE"]
              image {
                format = multiboot
                inline = "{{MultibootHex}}"
                cmdline = "  a b  "
                modules = [
                  { file = "m.bin" }
                  { inline = "ff", cmdline = "x=1" }
                ]
              }
            }
            """, "x.conf", dir.Path);
        Assert.True(spec.Machine.Platform.Irqchip);
        Assert.Equal(["x2apic", "XSAVE"], spec.Machine.Platform.CpuidMask);
        Assert.Equal("a b", spec.Machine.Platform.Cmdline);
        Assert.Equal("kernel", spec.Machine.Platform.ProgramName);
        Assert.Equal(["m.bin", "module x=1"], spec.Machine.Platform.Modules.Select(m => m.String));
        Assert.Equal([1, 2, 3], spec.Machine.Platform.Modules[0].Data);
    }

    [Theory]
    [InlineData("cpu.mode = unreal", "guest.cpu.mode", "not a CPU mode")]
    [InlineData("image.format = bzimage", "guest.image.format", "not a format")]
    [InlineData("cpuid.mask = [\"x2apic\", \"warp-drive\"]", "guest.cpuid.mask", "'warp-drive' is not a known CPUID feature")]
    [InlineData("cpuid.mask = x2apic", "guest.cpuid.mask", "expected a list")]
    [InlineData("cpuid.flags = []", "guest.cpuid.flags", "unknown key")]
    [InlineData("irqchip = maybe", "guest.irqchip", "not a boolean")]
    [InlineData("memory = [{ address = 0, size = 1M }, { address = 0x80000, size = 1M }]", "guest.memory[1].address", "overlaps")]
    [InlineData("memory = [{ address = 0, size = 1M }, { address = 0xfee00000, size = 4K }]\nirqchip = true", "guest.memory[1].address", "local APIC")]
    [InlineData("memory = [{ address = 0, size = 1M }, { address = 0xfec00000, size = 4K }]\nirqchip = true", "guest.memory[1].address", "IOAPIC")]
    [InlineData("vcpus = 2\nirqchip = true\nvcpu-overrides { \"1\" { registers.rsi = 1 } }", "guest.vcpu-overrides.1", "INIT/SIPI")]
    [InlineData("image.cmdline = \"quiet\"", "guest.image.cmdline", "only to Multiboot kernels")]
    [InlineData("image.modules = [{ inline = \"00\" }]", "guest.image.modules", "only to Multiboot kernels")]
    [InlineData("image.format = elf", "guest.image.inline", "not a loadable ELF")]
    [InlineData("image.format = multiboot", "guest.image.inline", "not a loadable Multiboot kernel")]
    [InlineData("memory = [{ address = 0, size = 4K, inline = \"zz\" }]", "guest.memory[0].inline", "hex")]
    [InlineData("memory = [{ address = 0, size = 4K, file = \"nope.bin\" }]", "guest.memory[0].file", "not found")]
    public void Bad_platform_config_names_the_key_and_the_file(string extra, string key, string problem)
    {
        var e = Assert.Throws<ConfigException>(() => Load($"guest {{\n image.inline = \"f4\"\n {extra}\n }}"));
        Assert.Equal(key, e.Key);
        Assert.Equal("guests/x.conf", e.File);
        Assert.Contains(problem, e.Message);
    }

    [Theory]
    [InlineData("ELF64", "elf", "protected", "entered in long mode")]
    [InlineData("ELF64", "elf", "real", "cannot be entered in real mode")]
    [InlineData("MB", "multiboot", "long", "32-bit protected mode")]
    [InlineData("MB", "multiboot", "real", "32-bit protected mode")]
    public void A_mode_that_does_not_fit_the_image_is_an_error_naming_cpu_mode(string image, string format, string mode, string problem)
    {
        var hex = image == "ELF64" ? Elf64Hex : MultibootHex;
        var e = Assert.Throws<ConfigException>(() => Load($"guest {{\n image.format = {format}\n image.inline = \"{hex}\"\n cpu.mode = {mode}\n }}"));
        Assert.Equal("guest.cpu.mode", e.Key);
        Assert.Contains(problem, e.Message);
    }

    [Fact]
    public void Region_content_larger_than_its_region_is_an_error()
    {
        var e = Assert.Throws<ConfigException>(() => Load(
            $"guest {{\n image.inline = \"f4\"\n memory = [{{ address = 0, size = 1M }}, {{ address = 0xfffff000, size = 4K, read-only = true, inline = \"{new string('0', 2 * 4097)}\" }}]\n }}"));
        Assert.Equal("guest.memory[1].inline", e.Key);
        Assert.Contains("larger than region", e.Message);
    }

    [Fact]
    public void Module_with_both_file_and_inline_is_an_error()
    {
        var e = Assert.Throws<ConfigException>(() => Load(
            $"guest {{\n image.format = multiboot\n image.inline = \"{MultibootHex}\"\n image.modules = [{{ file = \"a\", inline = \"00\" }}]\n }}"));
        Assert.Equal("guest.image.modules[0].file", e.Key);
    }

    [Fact]
    public void A_bad_mode_in_a_set_override_names_the_key()
    {
        var e = Assert.Throws<ConfigException>(() => Load("guest { image.inline = \"f4\" }", "guest.cpu.mode = virtual86"));
        Assert.Equal("guest.cpu.mode", e.Key);
    }
}

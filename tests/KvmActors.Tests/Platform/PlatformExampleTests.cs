using KvmActors.Runtime.Boot;
using KvmActors.Runtime.Config;
using KvmActors.Tests.Support;
using Xunit;

namespace KvmActors.Tests.Platform;

/// <summary>The platform examples in hocon/guests/ hold the bytes the tests assemble, and bind as documented.</summary>
public sealed class PlatformExampleTests
{
    /// <summary>What hocon/guests/multiboot.conf prints.</summary>
    public const string MultibootExpected =
        "kernel console=ttyS0 greeting=hello\n" +
        "multiboot-module.txt first module: Hello from a Multiboot module!\n\n";

    private static GuestSpec Example(string name) =>
        GuestConfigLoader.LoadFile(Path.Combine(RepoRoot.Path, "hocon", "guests", name));

    [Fact]
    public void Protected_example_holds_the_assembled_guest()
    {
        var spec = Example("protected.conf");
        Assert.Equal(PlatformGuests.ProtectedHello(), spec.Machine.Image.Bytes);
        Assert.Equal(CpuMode.Protected, spec.Machine.Platform.Mode);
        Assert.Equal(PlatformGuests.HighLoad, spec.Machine.Image.LoadAddress);
    }

    [Fact]
    public void Long_example_holds_the_assembled_guest()
    {
        var spec = Example("long.conf");
        Assert.Equal(PlatformGuests.LongHello(), spec.Machine.Image.Bytes);
        Assert.Equal(CpuMode.Long, spec.Machine.Platform.Mode);
    }

    [Fact]
    public void Multiboot_example_holds_the_assembled_kernel_its_command_line_and_module()
    {
        var spec = Example("multiboot.conf");
        Assert.Equal(PlatformGuests.MultibootFlatKernel(), spec.Machine.Image.Bytes);
        Assert.Equal(PlatformNames.FormatMultiboot, spec.Machine.Platform.Format);
        Assert.Equal(CpuMode.Protected, spec.Machine.Platform.Mode);
        Assert.Equal("kernel", spec.Machine.Platform.ProgramName);
        Assert.Equal("console=ttyS0 greeting=hello", spec.Machine.Platform.Cmdline);
        var module = Assert.Single(spec.Machine.Platform.Modules);
        Assert.Equal("multiboot-module.txt first module", module.String);
        Assert.Equal("Hello from a Multiboot module!\n"u8.ToArray(), module.Data);
    }

    [Fact]
    public void Smp_irqchip_example_holds_the_assembled_guest_and_enters_the_bsp_code()
    {
        var spec = Example("smp-irqchip.conf");
        var (image, entry) = PlatformGuests.SmpIrqchip();
        Assert.Equal(image, spec.Machine.Image.Bytes);
        Assert.Equal(PlatformGuests.SmpLoad, spec.Machine.Image.LoadAddress);
        Assert.Equal(entry, spec.Machine.Cpu.Registers["rip"]);
        Assert.True(spec.Machine.Platform.Irqchip);
        Assert.Equal(CpuMode.Protected, spec.Machine.Platform.Mode);
    }

    [Fact]
    public void Fw_cfg_example_holds_the_assembled_guest_and_a_rom()
    {
        var spec = Example("fw-cfg.conf");
        Assert.Equal(PlatformGuests.FwCfgProbe(), spec.Machine.Image.Bytes);
        Assert.Equal(3, spec.Machine.VcpuCount);
        var rom = Assert.Single(spec.Machine.Platform.RegionContents);
        Assert.Equal(("rom", 0xffff0000UL), (rom.RegionName, rom.GuestAddress));
        Assert.Equal([0x5a], rom.Data);
        Assert.Equal(2, spec.Machine.Memory.Count(r => !r.ReadOnly));
    }
}

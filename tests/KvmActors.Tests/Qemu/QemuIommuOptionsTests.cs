using KvmActors.Host.Qemu;
using KvmActors.Runtime.Config;
using KvmActors.Tests.Platform;
using Xunit;

namespace KvmActors.Tests.Qemu;

/// <summary>kvmactors qemu: -M q35,kernel-irqchip=split, -device intel-iommu and -device edu mapped onto a guest file.</summary>
public sealed class QemuIommuOptionsTests
{
    // kvm-unit-tests' [intel_iommu] line.
    private static readonly string[] IntelIommuLine =
    [
        "--no-reboot", "-nodefaults", "-device", "pc-testdev", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x4",
        "-display", "none", "-serial", "stdio", "-device", "pci-testdev", "-machine", "accel=kvm", "-kernel", "k.flat",
        "-smp", "4", "-M", "q35,kernel-irqchip=split", "-device", "intel-iommu,intremap=on,eim=off", "-device", "edu",
    ];

    [Fact]
    public void The_intel_iommu_line_maps_onto_a_split_irqchip_q35_guest_with_ioapic_pics_iommu_and_edu()
    {
        var q = QemuCommandLine.Parse(IntelIommuLine);
        Assert.True(q.Q35);
        Assert.True(q.SplitIrqchip);
        Assert.True(q.IntelIommu);
        Assert.True(q.InterruptRemapping);
        Assert.True(q.Edu);

        var dir = Directory.CreateTempSubdirectory("qemu-iommu-");
        File.WriteAllBytes(Path.Combine(dir.FullName, "k.flat"), PlatformGuests.MultibootFlatKernel());
        var hocon = QemuCommandLine.ToHocon(q, dir.FullName);
        var spec = GuestConfigLoader.FromText(hocon, "qemu.conf", "/");
        dir.Delete(true);
        Assert.True(spec.Machine.Platform.Irqchip);
        Assert.True(spec.Machine.Platform.SplitIrqchip);
        Assert.Equal(["com1", "fw-cfg", "rtc", "acpi-pm", "ioapic", "pic", "pci", "iommu", "debug-exit", "pc-testdev", "pci-testdev", "edu"],
            spec.Devices.Select(d => d.Name));
        Assert.Equal(new MmioRange(0xfec00000, 0xfec00fff), Assert.Single(spec.Devices.Single(d => d.Name == "ioapic").Mmio));
        Assert.Equal(new MmioRange(0xfed90000, 0xfed90fff), Assert.Single(spec.Devices.Single(d => d.Name == "iommu").Mmio));
        Assert.Equal([new PortRange(0x20, 0x21), new PortRange(0xa0, 0xa1)], spec.Devices.Single(d => d.Name == "pic").Ports);
        Assert.Equal("q35", spec.Devices.Single(d => d.Name == "pci").Options.GetString("chipset"));
        Assert.True(spec.Devices.Single(d => d.Name == "iommu").Options.GetBool("intremap"));
    }

    [Fact]
    public void Without_split_the_machine_keeps_the_kernel_irqchip_and_q35_only_changes_the_host_bridge()
    {
        var q = QemuCommandLine.Parse(["-kernel", "k.flat", "-M", "q35", "-device", "edu"]);
        Assert.True(q.Q35);
        Assert.False(q.SplitIrqchip);
        var hocon = QemuCommandLine.ToHocon(q, "/");
        Assert.Contains("irqchip = true", hocon);
        Assert.DoesNotContain("ioapic", hocon);
        Assert.Contains("chipset = q35", hocon);
        Assert.DoesNotContain("chipset", QemuCommandLine.ToHocon(QemuCommandLine.Parse(["-kernel", "k.flat", "-M", "pc"]), "/"));
    }

    [Theory]
    [InlineData("intel-iommu needs q35", new[] { "-device", "intel-iommu" }, "only the q35 machine")]
    [InlineData("intremap=on needs split", new[] { "-M", "q35", "-device", "intel-iommu,intremap=on" }, "kernel-irqchip=split")]
    [InlineData("eim=on not built", new[] { "-M", "q35,kernel-irqchip=split", "-device", "intel-iommu,eim=on" }, "eim=on")]
    [InlineData("unknown property", new[] { "-M", "q35", "-device", "intel-iommu,caching-mode=on" }, "caching-mode")]
    [InlineData("kernel-irqchip=off", new[] { "-M", "q35,kernel-irqchip=off" }, "kernel-irqchip=off")]
    [InlineData("edu takes no properties", new[] { "-device", "edu,dma_mask=0xff" }, "edu")]
    public void What_is_not_built_is_an_error_naming_the_option(string why, string[] args, string named)
    {
        var e = Assert.Throws<QemuUsageException>(() => QemuCommandLine.Parse(["-kernel", "k.flat", .. args]));
        Assert.True(e.Message.Contains(named), $"{why}: {e.Message}");
    }

    [Fact]
    public void Intremap_defaults_to_on_with_a_split_irqchip_as_qemu_s_auto()
    {
        Assert.True(QemuCommandLine.Parse(["-kernel", "k", "-M", "q35,kernel-irqchip=split", "-device", "intel-iommu"]).InterruptRemapping);
        Assert.False(QemuCommandLine.Parse(["-kernel", "k", "-M", "q35", "-device", "intel-iommu"]).InterruptRemapping);
        Assert.Contains("name \"edu\"", QemuCommandLine.DeviceList);
        Assert.Contains("name \"intel-iommu\"", QemuCommandLine.DeviceList);
    }
}

using KvmActors.Runtime.Boot;
using KvmActors.Runtime.Config;
using KvmActors.Runtime.Kvm;
using KvmActors.Runtime.Vm;
using KvmActors.Sdk;
using KvmActors.Tests.Support;
using Xunit;

namespace KvmActors.Tests.Platform;

/// <summary>
/// What <see cref="Machine.Create"/> leaves in KVM before any vCPU runs: CPUID per vCPU, entry state per mode,
/// config registers on top, APs waiting for INIT/SIPI with an irqchip, and SetIrqLine.
/// </summary>
public sealed class MachineTests
{
    private const uint MpStateRunnable = 0;

    private static GuestSpec Spec(string hocon) => GuestConfigLoader.FromText(hocon, "machine.conf", AppContext.BaseDirectory);

    private static Machine Create(string hocon) => Machine.Create(Spec(hocon).Machine, KvmSystem.DefaultPath);

    [KvmFact]
    public void Without_an_irqchip_every_vcpu_starts_at_the_entry_and_irq_lines_go_nowhere()
    {
        using var m = Create("""
            guest {
              vcpus = 3
              image.inline = "f4"
              vcpu-overrides { "2" { registers { rsi = 2, rsp = 0x8200 } } }
            }
            """);
        Assert.False(m.HasIrqchip);
        Assert.False(m.SetIrqLine(4, true));
        foreach (var v in m.Vcpus)
        {
            Assert.Equal(MpStateRunnable, v.GetMpState());
            var regs = v.GetRegs();
            Assert.Equal(0x1000UL, regs.Rip);
            Assert.Equal(v.Id == 2 ? 0x8200UL : BootLayout.BootStackTop, regs.Rsp);
            Assert.Equal(v.Id == 2 ? 2UL : 0UL, regs.Rsi);
            var s = v.GetSregs();
            Assert.Equal((0UL, (ushort)0), (s.Cs.Base, s.Cs.Selector));
            Assert.Equal(0UL, s.Cr0 & CpuSetup.Cr0Pe);
        }
    }

    [KvmFact]
    public void With_an_irqchip_only_the_bsp_has_an_entry_state_and_the_aps_wait_for_init_sipi()
    {
        using var m = Create("""
            guest {
              vcpus = 3
              irqchip = true
              memory = [
                { address = 0, size = 2M }
              ]
              image {
                inline = "f4"
                load-address = 0x100000
              }
              cpu.mode = protected
              cpu.registers.rsi = 0x1234
            }
            """);
        Assert.True(m.HasIrqchip);
        Assert.Equal(MpStateRunnable, m.Vcpus[0].GetMpState());
        Assert.Equal(Machine.MpStateUninitialized, m.Vcpus[1].GetMpState());
        Assert.Equal(Machine.MpStateUninitialized, m.Vcpus[2].GetMpState());

        var bsp = m.Vcpus[0].GetRegs();
        Assert.Equal((0x100000UL, BootLayout.BootStackTop, 0x1234UL), (bsp.Rip, bsp.Rsp, bsp.Rsi));
        var s = m.Vcpus[0].GetSregs();
        Assert.Equal(BootLayout.Code32Selector, s.Cs.Selector);
        Assert.Equal(CpuSetup.Cr0Pe, s.Cr0 & CpuSetup.Cr0Pe);

        // The APs keep KVM's reset state: nothing of the entry state reached them.
        var ap = m.Vcpus[1].GetRegs();
        Assert.NotEqual(0x100000UL, ap.Rip);
        Assert.NotEqual(0x1234UL, ap.Rsi);

        Assert.True(m.SetIrqLine(4, true));
        Assert.True(m.SetIrqLine(4, false));
    }

    [KvmFact]
    public void Every_vcpu_gets_cpuid_with_its_own_apic_id_and_the_masked_features_cleared()
    {
        using var m = Create("""
            guest {
              vcpus = 3
              image.inline = "f4"
              cpuid.mask = ["x2apic", "rdrand"]
            }
            """);
        Assert.Equal(3, m.Cpuid.Count);
        for (var i = 0; i < 3; i++)
        {
            var leaf1 = CpuidSetup.Find(m.Cpuid[i], 1)!.Value;
            Assert.Equal((uint)i, leaf1.Ebx >> 24);
            Assert.Equal(0u, leaf1.Ecx & (1u << 21)); // x2APIC
            Assert.Equal(0u, leaf1.Ecx & (1u << 30)); // RDRAND
        }
    }

    [KvmFact]
    public void Long_mode_entry_has_long_mode_active_and_the_identity_map_loaded()
    {
        using var m = Create("""
            guest {
              memory = [
                { address = 0, size = 2M }
              ]
              image {
                inline = "f4"
                load-address = 0x100000
              }
              cpu.mode = long
            }
            """);
        var s = m.Vcpus[0].GetSregs();
        Assert.Equal(CpuSetup.EferLma, s.Efer & CpuSetup.EferLma);
        Assert.Equal((byte)1, s.Cs.L);
        Assert.Equal(BootLayout.Pml4Address, s.Cr3);
        Assert.Equal(0x100000UL, m.Vcpus[0].GetRegs().Rip);
    }

    [KvmFact]
    public void A_multiboot_kernel_is_entered_with_the_magic_and_the_info_address()
    {
        using var m = Create($$"""
            guest {
              memory = [
                { address = 0, size = 2M }
              ]
              image {
                format = multiboot
                inline = "{{Guests.Hex(PlatformGuests.MultibootFlatKernel())}}"
              }
            }
            """);
        var regs = m.Vcpus[0].GetRegs();
        Assert.Equal((ulong)Multiboot.BootloaderMagic, regs.Rax);
        Assert.Equal(m.Image!.MultibootInfoAddress, regs.Rbx);
        Assert.Equal(PlatformGuests.HighLoad + 32, regs.Rip);
        Assert.Equal(CpuSetup.Cr0Pe, m.Vcpus[0].GetSregs().Cr0 & CpuSetup.Cr0Pe);
    }

    [KvmFact]
    public void A_real_mode_entry_above_64k_gets_a_code_segment()
    {
        using var m = Create("""
            guest {
              image {
                inline = "f4"
                load-address = 0x12340
              }
            }
            """);
        var s = m.Vcpus[0].GetSregs();
        Assert.Equal(((ushort)0x1234, 0x12340UL), (s.Cs.Selector, s.Cs.Base));
        Assert.Equal(0UL, m.Vcpus[0].GetRegs().Rip);
    }

    [KvmFact]
    public void Rom_region_content_is_in_memory()
    {
        using var m = Create("""
            guest {
              image.inline = "f4"
              memory = [
                { name = ram, address = 0, size = 1M }
                { name = rom, address = 0xfffff000, size = 4K, read-only = true, inline = "01 02 03" }
              ]
            }
            """);
        var bytes = new byte[4];
        m.Memory.Read(0xfffff000, bytes);
        Assert.Equal([1, 2, 3, 0], bytes);
        Assert.Equal(1UL << 20, m.Info.RamSize);
    }

    [KvmTheory]
    [InlineData("cpu.mode = protected\n image { inline = \"f4\"\n load-address = 0x1000 }", "guest.image.load-address", "GDT")]
    [InlineData("cpu.mode = long\n image { inline = \"f4\"\n load-address = 0xa000 }", "guest.image.load-address", "page directories")]
    [InlineData("image { inline = \"f4\"\n load-address = 0x200000 }", "guest.image.load-address", "outside RAM")]
    [InlineData("cpu.mode = protected\n memory = [{ address = 0x100000, size = 1M }]\n image { inline = \"f4\"\n load-address = 0x100000 }", "guest.memory", "GDT")]
    public void Images_that_collide_with_the_boot_layout_are_config_errors(string body, string key, string problem)
    {
        var e = Assert.Throws<ConfigException>(() => Create($"guest {{\n {body}\n }}"));
        Assert.Equal(key, e.Key);
        Assert.Contains(problem, e.Message);
    }
}

using KvmActors.Runtime.Boot;
using KvmActors.Runtime.Config;
using Xunit;

namespace KvmActors.Tests.ConfigBinding;

/// <summary>Binding guest.cpuid (model, vendor, signature, features) and the full entry state (CRs, segment attributes, boot-tables).</summary>
public sealed class CpuConfigTests
{
    private static GuestSpec Load(string guestBody, params string[] sets) =>
        GuestConfigLoader.FromText($"guest {{\n  image.inline = \"f4\"\n{guestBody}\n}}", "guests/x.conf", AppContext.BaseDirectory, sets);

    private static ConfigException Fails(string guestBody, params string[] sets) =>
        Assert.Throws<ConfigException>(() => Load(guestBody, sets));

    [Fact]
    public void Cpuid_binds_the_model_overrides_and_features_by_their_canonical_names()
    {
        var spec = Load("""
              cpuid {
                model = QEMU64
                vendor = "GenuineIntel"
                family = 6
                model-number = 0x3a
                stepping = 9
                brand = "Test CPU"
                features = ["+x2apic", "+tsc_deadline_timer", "-SSE4_1", "-xsave"]
                mask = ["pcid"]
              }
            """).Machine.Platform.Cpuid;
        Assert.Equal("qemu64", spec.Model);
        Assert.Equal("GenuineIntel", spec.Vendor);
        Assert.Equal((6, 0x3a, 9), (spec.Family, spec.ModelNumber, spec.Stepping));
        Assert.Equal("Test CPU", spec.Brand);
        Assert.Equal(["x2apic", "tsc-deadline"], spec.Add);
        Assert.Equal(["sse4.1", "xsave", "pcid"], spec.Remove); // the mask is one more removal
        Assert.Equal("guests/x.conf", spec.Source);
    }

    [Fact]
    public void Defaults_are_the_host_model_with_nothing_changed_and_the_vmms_boot_tables()
    {
        var spec = Load("");
        Assert.Equal(CpuidSpec.Default with { Source = "guests/x.conf" }, spec.Machine.Platform.Cpuid with { Add = [], Remove = [] });
        Assert.Null(spec.Machine.Platform.Cpuid.Family);
        Assert.True(spec.Machine.Platform.BootTables);
    }

    [Theory]
    [InlineData("cpuid.model = pentium9", "guest.cpuid.model", "'pentium9' is not a CPU model (known: host, max, qemu64")]
    [InlineData("cpuid.features = [\"+x2apik\"]", "guest.cpuid.features", "'x2apik' is not a known CPUID feature (did you mean x2apic?)")]
    [InlineData("cpuid.features = [\"x2apic\"]", "guest.cpuid.features", "'x2apic' must be +NAME (add the feature) or -NAME")]
    [InlineData("cpuid.mask = [\"no-such\"]", "guest.cpuid.mask", "'no-such' is not a known CPUID feature")]
    [InlineData("cpuid.vendor = Intel", "guest.cpuid.vendor", "must be 12 printable ASCII characters")]
    [InlineData("cpuid.stepping = 16", "guest.cpuid.stepping", "16")]
    [InlineData("cpuid.family = 271", "guest.cpuid.family", "271")]
    [InlineData("cpu.segments.cs.dpl = 4", "guest.cpu.segments.cs.dpl", "4")]
    [InlineData("cpu.segments.tr.type = 16", "guest.cpu.segments.tr.type", "16")]
    [InlineData("cpu.segments.ss.present = maybe", "guest.cpu.segments.ss.present", "maybe")]
    [InlineData("cpu.segments.gdtr.type = 3", "guest.cpu.segments.gdtr.type", "unknown key (known here: base, limit)")]
    [InlineData("cpu.segments.idtr.limit = 0x10000", "guest.cpu.segments.idtr.limit", "0x10000")]
    [InlineData("cpu.segments.cs { l = true, db = true }", "guest.cpu.segments.cs.l", "must have db = false")]
    [InlineData("cpu.segments.xs.base = 0", "guest.cpu.segments.xs", "unknown key")]
    [InlineData("cpu.boot-tables = some", "guest.cpu.boot-tables", "'some' is not auto or none")]
    [InlineData("cpu { mode = long, boot-tables = none }", "guest.cpu.registers.cr3", "needs cr3")]
    public void Bad_cpu_settings_are_errors_naming_the_key_and_the_file(string line, string key, string problem)
    {
        var e = Fails(line);
        Assert.Equal("guests/x.conf", e.File);
        Assert.Equal(key, e.Key);
        Assert.Contains(problem, e.Message);
    }

    [Fact]
    public void A_bad_setting_from_set_names_set()
    {
        var e = Fails("", "guest.cpuid.features = [\"+nope\"]");
        Assert.Equal("--set", e.File);
        Assert.Equal("guest.cpuid.features", e.Key);
    }

    [Fact]
    public void Control_registers_and_segment_attributes_bind_for_every_segment_and_table()
    {
        var cpu = Load("""
              cpu {
                mode = long
                boot-tables = none
                registers { cr0 = 0x80050033, cr3 = 0x200000, cr4 = 0x20, efer = 0x500 }
                segments {
                  cs { selector = 8, type = 11, dpl = 0, db = false, l = true, g = true, s = true, present = true }
                  tr { selector = 0x28, base = 0x5000, limit = 0x67, type = 11, s = false }
                  ldtr { unusable = true }
                  gdtr { base = 0x1000, limit = 0x2f }
                  idtr { base = 0, limit = 0 }
                }
              }
            """).Machine;
        Assert.False(cpu.Platform.BootTables);
        Assert.Equal(0x80050033UL, cpu.Cpu.Registers["cr0"]);
        Assert.Equal(0x500UL, cpu.Cpu.Registers["efer"]);
        var cs = cpu.Cpu.Segments["cs"];
        Assert.Equal(((byte?)11, (byte?)0, (byte?)0, (byte?)1, (byte?)1), (cs.Type, cs.Dpl, cs.Db, cs.L, cs.G));
        Assert.Equal(((byte?)0, (ulong?)0x5000), (cpu.Cpu.Segments["tr"].S, cpu.Cpu.Segments["tr"].Base));
        Assert.Equal((byte?)1, cpu.Cpu.Segments["ldtr"].Unusable);
        Assert.Equal((uint?)0x2f, cpu.Cpu.Segments["gdtr"].Limit);
    }

    [Fact]
    public void Boot_tables_none_lets_a_flat_image_name_page_0_as_its_load_address()
    {
        var spec = Load("  image.load-address = 0\n  cpu.boot-tables = none");
        Assert.Equal(0UL, spec.Machine.Image.LoadAddress);
        Assert.Empty(BootLayout.Reserved(CpuMode.Protected, 1UL << 20, bootTables: false));
        Assert.Contains(BootLayout.Reserved(CpuMode.Real), r => r.Start == 0); // auto keeps page 0 free
    }
}

using KvmActors.Runtime.Bus;
using KvmActors.Sdk;
using KvmActors.Runtime.Config;
using KvmActors.Tests.Support;
using Xunit;

namespace KvmActors.Tests.Runtime;

/// <summary>Binding guest files: defaults, overrides, and errors that name the key and the file.</summary>
public sealed class GuestConfigTests
{
    private static GuestSpec Load(string hocon, params string[] sets) =>
        GuestConfigLoader.FromText(hocon, "guests/x.conf", AppContext.BaseDirectory, sets);

    private const string Minimal = """
        guest {
          image.inline = "f4"
        }
        """;

    [Fact]
    public void Defaults_come_from_reference_conf()
    {
        var spec = Load(Minimal);
        Assert.Equal(1, spec.Machine.VcpuCount);
        Assert.Equal("all-halted", spec.HaltPolicy);
        Assert.Equal(UnmappedAccessPolicy.Ignore, spec.UnmappedIo);
        Assert.Equal(0x1000UL, spec.Machine.Image.LoadAddress);
        Assert.Equal([0xf4], spec.Machine.Image.Bytes);
        var com1 = Assert.Single(spec.Devices);
        Assert.Equal("uart-16550", com1.Type);
        Assert.Equal(new PortRange(0x3f8, 0x3ff), Assert.Single(com1.Ports));
        Assert.Equal(0x100000UL, Assert.Single(spec.Machine.Memory).Size);
    }

    [Fact]
    public void Per_vcpu_overrides_and_set_overrides_apply()
    {
        var spec = Load("""
            guest {
              vcpus = 2
              image.inline = "f4"
              cpu.registers.rip = 0x1000
              vcpu-overrides { "1" { registers { rip = 0x2000, rsi = 1 } } }
            }
            """, "guest.vcpus=3", "guest.memory=[{address=0, size=2M}]");
        Assert.Equal(3, spec.Machine.VcpuCount);
        Assert.Equal(0x200000UL, Assert.Single(spec.Machine.Memory).Size);
        Assert.Equal(0x1000UL, spec.Machine.Cpu.Registers["rip"]);
        Assert.Equal(0x2000UL, spec.Machine.VcpuOverrides[1].Registers["rip"]);
        Assert.Equal(1UL, spec.Machine.VcpuOverrides[1].Registers["rsi"]);
    }

    [Theory]
    [InlineData("guest { image.inline = \"f4\"\n vcpu = 2 }", "guest.vcpu", "unknown key")]
    [InlineData("guest { image.inline = \"f4\"\n cpu.registers.rxx = 1 }", "guest.cpu.registers.rxx", "unknown key")]
    [InlineData("guest { image.inline = \"f4\"\n devices.com1.port = \"0x3f8\" }", "guest.devices.com1.port", "unknown key")]
    [InlineData("guests { }", "guests", "unknown key")]
    [InlineData("guest { image.inline = \"f4\"\n vcpus = many }", "guest.vcpus", "not a number")]
    [InlineData("guest { image.inline = \"f4\"\n vcpus = 0 }", "guest.vcpus", "at least 1")]
    [InlineData("guest { image.inline = \"zz\" }", "guest.image.inline", "hex")]
    [InlineData("guest { image.file = \"missing.bin\" }", "guest.image.file", "not found")]
    [InlineData("guest { image.inline = \"f4\"\n memory = [{ address = 0x800, size = 4K }] }", "guest.memory[0].address", "page-aligned")]
    [InlineData("guest { image.inline = \"f4\"\n halt-policy = never }", "guest.halt-policy", "not a policy")]
    [InlineData("guest { image.inline = \"f4\"\n vcpu-overrides { \"5\" { registers.rip = 1 } } }", "guest.vcpu-overrides.5", "vCPU index")]
    [InlineData("guest { image.inline = \"f4\"\n devices.x { ports = [\"0x10\"] } }", "guest.devices.x.type", "missing")]
    [InlineData("guest { image.inline = \"f4\"\n devices.x { type = debugcon\n ports = [\"0x20-0x10\"] } }", "guest.devices.x.ports", "not a range")]
    public void Bad_config_names_the_key_and_the_file(string hocon, string key, string problem)
    {
        var e = Assert.Throws<ConfigException>(() => Load(hocon));
        Assert.Equal(key, e.Key);
        Assert.Equal("guests/x.conf", e.File);
        Assert.Contains(problem, e.Message);
        Assert.StartsWith("guests/x.conf: " + key, e.Message);
    }

    [Fact]
    public void Unknown_key_in_a_set_override_names_the_override()
    {
        var e = Assert.Throws<ConfigException>(() => Load(Minimal, "guest.cpus=2"));
        Assert.Equal("--set", e.File);
        Assert.Equal("guest.cpus", e.Key);
    }

    [Fact]
    public void Overlapping_port_ranges_are_a_config_error_naming_both_devices()
    {
        var e = Assert.Throws<ConfigException>(() => Load("""
            guest {
              image.inline = "f4"
              devices.dbg {
                type = debugcon
                ports = ["0x3f0-0x3f8"]
              }
            }
            """));
        Assert.Equal("guest.devices.dbg.ports", e.Key);
        Assert.Contains("'com1'", e.Message);
        Assert.Contains("'dbg'", e.Message);
    }

    [Fact]
    public void Port_bus_rejects_overlaps_naming_both_devices()
    {
        var e = Assert.Throws<BusOverlapException>(() => PortBus.Build([
            new PortBus.Entry("a", new PortRange(0x10, 0x1f), Akka.Actor.ActorRefs.Nobody),
            new PortBus.Entry("b", new PortRange(0x1f, 0x20), Akka.Actor.ActorRefs.Nobody),
        ]));
        Assert.Contains("'a'", e.Message);
        Assert.Contains("'b'", e.Message);
    }

    [Fact]
    public void Port_bus_routes_inclusive_ranges()
    {
        var bus = PortBus.Build([new PortBus.Entry("com1", new PortRange(0x3f8, 0x3ff), Akka.Actor.ActorRefs.Nobody)]);
        Assert.Null(bus.Lookup(0x3f7));
        Assert.Equal("com1", bus.Lookup(0x3f8)!.DeviceName);
        Assert.Equal("com1", bus.Lookup(0x3ff)!.DeviceName);
        Assert.Null(bus.Lookup(0x400));
    }

    [Theory]
    [InlineData("0x1000", 0x1000UL)]
    [InlineData("4096", 4096UL)]
    [InlineData("64K", 65536UL)]
    [InlineData("2M", 2097152UL)]
    [InlineData("1GiB", 1073741824UL)]
    public void Numbers_parse_in_config_forms(string text, ulong expected)
    {
        Assert.True(ConfigNumbers.TryParse(text, out var v));
        Assert.Equal(expected, v);
    }

    [Fact]
    public void Every_example_guest_in_hocon_guests_loads()
    {
        var dir = Path.Combine(RepoRoot.Path, "hocon", "guests");
        var files = Directory.GetFiles(dir, "*.conf");
        Assert.NotEmpty(files);
        foreach (var f in files) GuestConfigLoader.LoadFile(f);
    }

    [Fact]
    public void Smp_hello_example_holds_the_bytes_the_tests_assemble()
    {
        var spec = GuestConfigLoader.LoadFile(Path.Combine(RepoRoot.Path, "hocon", "guests", "smp-hello.conf"));
        Assert.Equal(Guests.SmpHello(), spec.Machine.Image.Bytes);
        Assert.Equal(4, spec.Machine.VcpuCount);
    }
}

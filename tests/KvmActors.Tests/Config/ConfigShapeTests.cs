using KvmActors.Runtime.Config;
using Xunit;

namespace KvmActors.Tests.ConfigBinding;

/// <summary>Values of the wrong shape, booleans, and --set blame: each a ConfigException naming the key and its source.</summary>
public sealed class ConfigShapeTests
{
    private static GuestSpec Load(string hocon, params string[] sets) =>
        GuestConfigLoader.FromText(hocon, "guests/x.conf", AppContext.BaseDirectory, sets);

    private static ConfigException Fails(string hocon, params string[] sets) =>
        Assert.Throws<ConfigException>(() => Load(hocon, sets));

    [Theory]
    [InlineData("guest = 1", "guest")]
    [InlineData("guest { image.inline = \"f4\"\n cpu = 1 }", "guest.cpu")]
    [InlineData("guest { image.inline = \"f4\"\n devices.com1 = 1 }", "guest.devices.com1")]
    [InlineData("guest { image.inline = \"f4\"\n supervision.vcpu = null }", "guest.supervision.vcpu")]
    [InlineData("guest { image = [1] }", "guest.image")]
    [InlineData("guest { image.inline = \"f4\"\n memory = [ 1 ] }", "guest.memory[0]")]
    [InlineData("kvmactors = 1\nguest.image.inline = f4", "kvmactors")]
    public void Config_scalar_where_object_expected_names_key(string hocon, string key)
    {
        var e = Fails(hocon);
        Assert.Equal(key, e.Key);
        Assert.Equal("guests/x.conf", e.File);
        Assert.Contains("expected", e.Message);
    }

    [Theory]
    [InlineData("guest { image.inline = null }", "guest.image.inline", "not null")]
    [InlineData("guest { image.inline = \"f4\"\n vcpus { a = 1 } }", "guest.vcpus", "not an object")]
    [InlineData("guest { image.inline = \"f4\"\n name = [a] }", "guest.name", "not a list")]
    [InlineData("guest { image.inline = \"f4\"\n devices.com1.ports = [] }", "guest.devices.com1.ports", "empty list")]
    [InlineData("guest { image.inline = \"f4\"\n devices.com1.ports = [ ] }", "guest.devices.com1.ports", "empty list")]
    [InlineData("guest { image.inline = \"f4\"\n devices.com1.ports = null }", "guest.devices.com1.ports", "null")]
    [InlineData("guest { image.inline = \"f4\"\n devices.d { type = debugcon\n mmio = [] } }", "guest.devices.d.mmio", "empty list")]
    [InlineData("guest { image.inline = \"f4\"\n devices.com1.ports = [[1]] }", "guest.devices.com1.ports[0]", "not a list")]
    [InlineData("guest { image.inline = \"f4\"\n devices.com1.irqs = [{ a = 1 }] }", "guest.devices.com1.irqs[0]", "not an object")]
    [InlineData("guest { image.inline = \"f4\"\n cpuid.mask = x2apic }", "guest.cpuid.mask", "expected a list")]
    [InlineData("guest { image.inline = \"f4\"\n memory = [] }", "guest.memory", "empty list")]
    [InlineData("guest { image.inline = \"f4\"\n memory = null }", "guest.memory", "null")]
    [InlineData("guest { image.inline = \"f4\"\n memory = [{ address = 0, size = [1] }] }", "guest.memory[0].size", "not a list")]
    [InlineData("guest { image { format = multiboot\n inline = \"f4\"\n modules = [ \"x\" ] } }", "guest.image.modules[0]", "expected")]
    [InlineData("guest { image.inline = \"f4\"\n vcpu-overrides { \"0\" = 5 } }", "guest.vcpu-overrides.0", "expected an object")]
    [InlineData("guest { image.inline = \"f4\"\n faults.vcpus { \"0\" = [] } }", "guest.faults.vcpus.0", "expected an object")]
    public void Config_wrong_shape_is_an_error_naming_the_key(string hocon, string key, string problem)
    {
        var e = Fails(hocon);
        Assert.Equal(key, e.Key);
        Assert.Contains(problem, e.Message);
    }

    [Theory]
    [InlineData("yes", true)]
    [InlineData("on", true)]
    [InlineData("true", true)]
    [InlineData("no", false)]
    [InlineData("off", false)]
    [InlineData("false", false)]
    public void Config_booleans_accept_hocon_words(string word, bool expected)
    {
        var spec = Load($$"""
            guest {
              image.inline = "f4"
              memory = [ { address = 0, size = 1M }, { name = rom, address = 0x100000, size = 4K, read-only = {{word}} } ]
              irqchip = {{word}}
              devices.com1.enabled = {{(expected ? "yes" : "on")}}
            }
            """);
        Assert.Equal(expected, spec.Machine.Memory[1].ReadOnly);
        Assert.Equal(expected, spec.Machine.Platform.Irqchip);
        Assert.Single(spec.Devices);
        Assert.Empty(Load("guest { image.inline = \"f4\"\n devices.com1.enabled = off }").Devices);
    }

    [Fact]
    public void Config_boolean_that_is_not_one_names_the_key() =>
        Assert.Equal("guest.memory[0].read-only", Fails("guest { image.inline = \"f4\"\n memory = [{ address = 0, size = 1M, read-only = maybe }] }").Key);

    [Theory]
    [InlineData("guest.vcpus=abc", "guest.vcpus")]
    [InlineData("guest.cpu=1", "guest.cpu")]
    [InlineData("guest.memory=[{ address = 0, size = 3 }]", "guest.memory[0].size")]
    [InlineData("guest.devices.com1.options.irq=9999", "guest.devices.com1.options.irq")]
    [InlineData("kvmactors.vm.kick-signal=abc", "kvmactors.vm.kick-signal")]
    public void Config_value_given_with_set_is_blamed_on_set(string set, string key)
    {
        var e = Assert.ThrowsAny<ConfigException>(() =>
        {
            var spec = Load("guest { image.inline = \"f4\" }", set);
            foreach (var d in spec.Devices) d.Options.GetInteger("irq", 4, 0, 1023); // as the UART reads it
        });
        Assert.Equal(key, e.Key);
        Assert.Equal(GuestConfigLoader.OverridesSource, e.File);
        Assert.StartsWith($"--set: {key}: ", e.Message);
    }

    [Fact]
    public void Config_value_from_the_file_is_blamed_on_the_file_even_with_set()
    {
        var e = Fails("guest { image.inline = \"f4\"\n vcpus = abc }", "guest.name=x");
        Assert.Equal("guests/x.conf", e.File);
        Assert.Equal("guest.vcpus", e.Key);
    }
}

using KvmActors.Runtime.Config;
using Xunit;

namespace KvmActors.Tests.ConfigBinding;

/// <summary>Memory maps the machine cannot hold and entries the CPU mode cannot reach: config errors naming the key.</summary>
public sealed class MachineLimitTests
{
    private static ConfigException Fails(string body) =>
        Assert.Throws<ConfigException>(() => GuestConfigLoader.FromText($"guest {{\n image.inline = f4\n {body}\n}}", "guests/x.conf", "."));

    [Fact]
    public void Machine_limit_region_that_wraps_names_the_key()
    {
        var e = Fails("memory = [{ address = 0, size = 1M }, { address = 0xfffffffffffff000, size = 8K }]");
        Assert.Equal("guest.memory[1].size", e.Key);
        Assert.Contains("wraps", e.Message);
    }

    [Fact]
    public void Machine_limit_region_beyond_the_physical_address_width_names_the_key()
    {
        var e = Fails($"memory = [{{ address = 0, size = 1M }}, {{ address = 0x{MachineLimits.GuestPhysicalLimit - 0x1000:x}, size = 8K }}]");
        Assert.Equal("guest.memory[1].size", e.Key);
        Assert.Contains("physical address space", e.Message);
    }

    [Fact]
    public void Machine_limit_regions_beyond_what_the_host_can_map_name_the_key()
    {
        var e = Fails("memory = [{ address = 0, size = 0x800000000000 }]");
        Assert.Equal("guest.memory[0].size", e.Key);
    }

    [Theory]
    [InlineData("cpu.mode = real\n memory = [{ address = 0, size = 2M }]\n image.load-address = 0x100000")]
    [InlineData("memory = [{ address = 0, size = 2M }]\n image.load-address = 0x180000")]
    public void Machine_limit_real_mode_entry_at_or_above_1MiB_names_the_key(string body)
    {
        var e = Fails(body);
        Assert.Equal("guest.image.load-address", e.Key);
        Assert.Contains("real mode", e.Message);
    }
}

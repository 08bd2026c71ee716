using System.Diagnostics;
using KvmActors.Runtime.Config;
using Xunit;

namespace KvmActors.Tests.ConfigBinding;

/// <summary>Files a config names are checked (stat) before they are read: regular files no larger than their target.</summary>
public sealed class ConfigFileCheckTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("kvmactors-files-");

    public void Dispose() => _dir.Delete(recursive: true);

    private string In(string name) => Path.Combine(_dir.FullName, name);

    private ConfigException Fails(string guestBody)
    {
        var sw = Stopwatch.StartNew();
        var e = Assert.Throws<ConfigException>(() => GuestConfigLoader.FromText($"guest {{\n{guestBody}\n}}", "guests/x.conf", _dir.FullName));
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(5), $"took {sw.Elapsed}");
        return e;
    }

    public static TheoryData<string, string> Specials => new()
    {
        { "/dev/zero", "a character device" },
        { "/proc/self/mem", "cannot read" },
        { "/", "a directory" },
    };

    [Theory]
    [MemberData(nameof(Specials))]
    public void Config_file_special_image_file_names_key_and_path(string path, string problem)
    {
        var e = Fails($"image.file = \"{path}\"");
        Assert.Equal("guest.image.file", e.Key);
        Assert.Contains(path, e.Message);
        Assert.Contains(problem, e.Message);
    }

    [Fact]
    public void Config_file_fifo_is_never_opened()
    {
        Support.Fifo.Make(In("pipe"));
        Assert.Contains("a FIFO", Fails("image.file = pipe").Message);
        Assert.Equal("guest.memory[0].file", Fails("image.inline = f4\n memory = [{ address = 0, size = 1M, file = pipe }]").Key);
        var load = Assert.Throws<ConfigException>(() => GuestConfigLoader.LoadFile(In("pipe")));
        Assert.Equal("(file)", load.Key);
        Assert.Contains("a FIFO", load.Message);
    }

    [Fact]
    public void Config_file_larger_than_its_region_or_memory_names_the_key()
    {
        File.WriteAllBytes(In("big.bin"), new byte[8192]);
        var region = Fails("image.inline = f4\n memory = [{ address = 0, size = 1M }, { name = rom, address = 0x100000, size = 4K, file = big.bin }]");
        Assert.Equal("guest.memory[1].file", region.Key);
        Assert.Contains("larger than region 'rom'", region.Message);
        var image = Fails("memory = [{ address = 0, size = 4K }]\n image.file = big.bin");
        Assert.Equal("guest.image.file", image.Key);
        Assert.Contains("larger than the guest's memory", image.Message);
    }

    [Fact]
    public void Config_file_module_that_is_special_names_its_key()
    {
        var e = Fails("image { format = multiboot\n inline = \"02 b0 ad 1b 00 00 00 00 fe 4f 52 e4\"\n modules = [{ file = \"/dev/zero\" }] }");
        Assert.Equal("guest.image.modules[0].file", e.Key);
        Assert.Contains("a character device", e.Message);
    }
}

using KvmActors.Host.Serve;
using Xunit;

namespace KvmActors.Tests.Serve;

/// <summary>
/// A posted guest's parse and console lines are kept per request text (GuestPreparation): each VM made from the same
/// text must still get its own console, and the guest-directory checks must still run on every create.
/// </summary>
public sealed class GuestPreparationCacheTests
{
    private const string Text = """
        guest {
          memory = [ { name = ram, address = 0x0, size = 64K } ]
          image { file = "link/x.bin", load-address = 0x1000 }
        }
        """;

    [Fact]
    public void Each_vm_made_from_the_same_text_is_attached_to_its_own_console()
    {
        var root = Directory.CreateTempSubdirectory("kvmactors-prep-").FullName;
        try
        {
            Directory.CreateDirectory(Path.Combine(root, "sub"));
            File.WriteAllBytes(Path.Combine(root, "sub", "x.bin"), [0xf4]);
            Directory.CreateSymbolicLink(Path.Combine(root, "link"), Path.Combine(root, "sub"));
            var request = new GuestRequest(Text, "same", []);
            var a = GuestPreparation.Prepare(request, root, "vm-a");
            var b = GuestPreparation.Prepare(request, root, "vm-b");
            Assert.Equal("attached:vm-a", a.Devices.Single(d => d.Name == "com1").Options.GetString("sink"));
            Assert.Equal("attached:vm-b", b.Devices.Single(d => d.Name == "com1").Options.GetString("sink"));
            Assert.Equal("attached:vm-b", b.Devices.Single(d => d.Name == "com1").Options.GetString("input"));
            Assert.Equal("same", b.Name);
        }
        finally { Directory.Delete(root, recursive: true); }
    }

    [Fact]
    public void The_guest_directory_check_runs_on_every_create_of_a_text_seen_before()
    {
        var root = Directory.CreateTempSubdirectory("kvmactors-prep-").FullName;
        try
        {
            Directory.CreateDirectory(Path.Combine(root, "sub"));
            File.WriteAllBytes(Path.Combine(root, "sub", "x.bin"), [0xf4]);
            var link = Path.Combine(root, "link");
            Directory.CreateSymbolicLink(link, Path.Combine(root, "sub"));
            var request = new GuestRequest(Text, "moved", []);
            GuestPreparation.Prepare(request, root, "vm-1"); // inside: accepted (and its parse kept)
            Directory.Delete(link);
            Directory.CreateSymbolicLink(link, "/etc");       // the same text now points outside
            var e = Assert.Throws<ProblemException>(() => GuestPreparation.Prepare(request, root, "vm-2"));
            Assert.Equal(400, e.Status);
            Assert.Contains("outside the guest directory", e.Message);
        }
        finally { Directory.Delete(root, recursive: true); }
    }
}

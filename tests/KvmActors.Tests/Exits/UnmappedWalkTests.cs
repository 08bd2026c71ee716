using KvmActors.Tests.Support;
using Xunit;

namespace KvmActors.Tests.Exits;

/// <summary>A guest touching unmapped MMIO page after page gets a bounded log from the real program.</summary>
public sealed class UnmappedWalkTests
{
    // Real mode at 0x1000: for ES = 0x1000, 0x1100, ... 0xff00 (every 4 KiB page from 0x10000 to 0xfffff, none of
    // them backed: RAM is 64 KiB), read ES:0 and write ES:0x800, then HLT.
    //   mov ax,0x1000 / l: mov es,ax / mov bl,es:[0] / mov es:[0x800],bl / add ax,0x100 / jnz l / hlt
    private static readonly byte[] WalkUnmappedPages = Convert.FromHexString("b800108ec0268a1e000026881e0008050001" + "75ef" + "f4");
    private const int PagesWalked = 0xf0;

    [KvmFact]
    public void Walking_240_unmapped_pages_logs_a_bounded_number_of_lines_and_the_guest_ends_normally()
    {
        var file = Path.Combine(Path.GetTempPath(), $"unmapped-walk-{Guid.NewGuid():N}.conf");
        File.WriteAllText(file, $$"""
            guest {
              name = unmapped-walk
              memory = [ { address = 0, size = 64K } ]
              image {
                inline = "{{Guests.Hex(WalkUnmappedPages)}}"
                load-address = 0x1000
              }
              cpu.registers.rip = 0x1000
            }
            """);
        try
        {
            var r = Kvmactors.Run("run", file);

            Assert.Equal(0, r.ExitCode);
            Assert.Equal("", r.Stdout);
            var lines = r.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            var unmapped = lines.Count(l => l.Contains("unmapped MMIO address"));
            // One line per page up to the log's capacity (64), then one "not logged" line: never one per access.
            Assert.Equal(64, unmapped);
            Assert.Single(lines, l => l.Contains("further unmapped accesses are not logged"));
            Assert.True(lines.Length < 80, $"{lines.Length} stderr lines:\n{r.Stderr}");
            Assert.Single(lines, l => l.Contains($"{2 * PagesWalked} unmapped access(es) in all"));
        }
        finally
        {
            File.Delete(file);
        }
    }
}

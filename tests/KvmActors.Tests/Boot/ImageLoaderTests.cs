using KvmActors.Runtime.Boot;
using KvmActors.Runtime.Memory;
using Xunit;

namespace KvmActors.Tests.Boot;

/// <summary>Flat and ELF loading, and every malformed-image error, against host-mapped guest memory (no KVM).</summary>
public sealed class ImageLoaderTests
{
    private const ulong MiB = 1UL << 20;

    private static GuestMemory Ram(ulong size = 4 * MiB) => CpuSetupTests.Ram(size);

    private static byte[] Read(IGuestMemory m, ulong address, int length)
    {
        var b = new byte[length];
        m.Read(address, b);
        return b;
    }

    [Fact]
    public void Flat_image_is_copied_and_entered_at_its_load_address_by_default()
    {
        using var m = Ram();
        var image = ImageLoader.LoadFlat(m, [1, 2, 3], 0x7c00);
        Assert.Equal(ImageFormat.Flat, image.Format);
        Assert.Equal(0x7c00UL, image.EntryPoint);
        Assert.Equal(new GuestRange(0x7c00, 0x7c03, "flat image"), image.Segments.Single());
        Assert.Equal(new byte[] { 1, 2, 3 }, Read(m, 0x7c00, 3));
        Assert.Equal(0x7c01UL, ImageLoader.LoadFlat(m, [1], 0x8000, entry: 0x7c01).EntryPoint);
    }

    [Fact]
    public void Flat_image_errors()
    {
        using var m = Ram();
        Assert.Contains("empty", Assert.Throws<BootImageException>(() => ImageLoader.LoadFlat(m, [], 0x8000)).Message);
        Assert.Contains("outside RAM", Assert.Throws<BootImageException>(() => ImageLoader.LoadFlat(m, new byte[16], 4 * MiB - 8)).Message);
        Assert.Contains("page 0", Assert.Throws<BootImageException>(() => ImageLoader.LoadFlat(m, new byte[16], 0x100)).Message);
        Assert.Contains("GDT", Assert.Throws<BootImageException>(() => ImageLoader.LoadFlat(m, new byte[16], 0x1000, CpuMode.Protected)).Message);
        Assert.Contains("page directories", Assert.Throws<BootImageException>(() => ImageLoader.LoadFlat(m, new byte[16], 0xb000, CpuMode.Long)).Message);
        ImageLoader.LoadFlat(m, new byte[16], 0x1000, CpuMode.Real); // real mode reserves only page 0
    }

    [Fact]
    public void Elf32_segments_are_loaded_at_paddr_with_zero_filled_tails()
    {
        using var m = Ram();
        m.Write(0x200000, Enumerable.Repeat((byte)0xee, 0x100).ToArray());
        var elf = TestImages.Elf(32, 0x100004,
        [
            new TestSegment(0x100000, [0x90, 0x90, 0x90, 0x90, 0xf4]),
            new TestSegment(0x200000, [0xaa, 0xbb], MemorySize: 0x100),
            new TestSegment(0x300000, [0x11], Type: 4), // PT_NOTE: ignored
        ]);
        var image = ImageLoader.LoadElf(m, elf);
        Assert.Equal(ImageFormat.Elf32, image.Format);
        Assert.Equal(CpuMode.Protected, image.NaturalMode);
        Assert.Equal(0x100004UL, image.EntryPoint);
        Assert.Equal([(0x100000UL, 0x100005UL), (0x200000UL, 0x200100UL)], image.Segments.Select(s => (s.Start, s.End)));
        Assert.Equal(new byte[] { 0x90, 0x90, 0x90, 0x90, 0xf4 }, Read(m, 0x100000, 5));
        var data = Read(m, 0x200000, 0x100);
        Assert.Equal([0xaa, 0xbb], data[..2]);
        Assert.All(data[2..], b => Assert.Equal(0, b));
        Assert.Equal(new byte[] { 0 }, Read(m, 0x300000, 1));
    }

    [Fact]
    public void Elf64_is_parsed_and_a_virtual_entry_is_translated_to_its_physical_address()
    {
        using var m = Ram();
        const ulong virtualBase = 0xffffffff80000000;
        var elf = TestImages.Elf(64, virtualBase + 0x10, [new TestSegment(0x100000, new byte[0x20], VirtualAddress: virtualBase)]);
        var parsed = ImageLoader.ParseElf(elf);
        Assert.Equal((64, (ushort)62, virtualBase + 0x10), (parsed.Bits, parsed.Machine, parsed.Entry));
        Assert.Equal(0x100010UL, parsed.PhysicalEntry);
        var image = ImageLoader.LoadElf(m, elf);
        Assert.Equal((ImageFormat.Elf64, 0x100010UL, CpuMode.Long), (image.Format, image.EntryPoint, image.NaturalMode!.Value));
    }

    public static TheoryData<string, string> BadElves()
    {
        var good = TestImages.Elf(32, 0x100000, [new TestSegment(0x100000, [0xf4])]);
        byte[] Patch(byte[] src, int offset, params byte[] bytes) { var c = (byte[])src.Clone(); bytes.CopyTo(c, offset); return c; }
        var segments = new[] { new TestSegment(0x100000, [0xf4]) };
        var dataOffset = TestImages.SegmentFileOffset(32, segments, 0);
        return new TheoryData<string, string>
        {
            { Convert.ToBase64String(Patch(good, 0, 0x7f, (byte)'E', (byte)'L', (byte)'G')), "not an ELF" },
            { Convert.ToBase64String(good[..20]), "truncated ELF32 header" },
            { Convert.ToBase64String(Patch(good, 4, 3)), "bad ELF class" },
            { Convert.ToBase64String(Patch(good, 5, 2)), "little-endian" },
            { Convert.ToBase64String(Patch(good, 16, 3, 0)), "not an executable" },
            { Convert.ToBase64String(Patch(good, 18, 62, 0)), "machine 62" },
            { Convert.ToBase64String(Patch(good, 44, 0, 0)), "no program headers" },
            { Convert.ToBase64String(Patch(good, 42, 8, 0)), "entry size 8" },
            { Convert.ToBase64String(good[..60]), "truncated ELF program header table" },
            { Convert.ToBase64String(Patch(good, 52 + 16, 0x10, 0, 0, 0)), "larger than p_memsz" },                  // filesz 0x10 > memsz 1
            { Convert.ToBase64String(Patch(good, 52 + 4, 0xf0, 0xff, 0, 0)), "past the end" },                        // p_offset beyond the file
            { Convert.ToBase64String(Patch(good, 52 + 16, 0, 0, 0, 0, 0, 0, 0, 0)), "no PT_LOAD segment" },           // filesz = memsz = 0
            { Convert.ToBase64String(Patch(good, 24, 0, 0, 0x20, 0)), "entry point 0x200000 is outside" },
            { Convert.ToBase64String(good[..(dataOffset)]), "past the end" },                                           // segment bytes cut off
        };
    }

    [Theory]
    [MemberData(nameof(BadElves))]
    public void Malformed_elf_files_fail_with_a_clear_message(string base64, string expected)
    {
        using var m = Ram();
        var e = Assert.Throws<BootImageException>(() => ImageLoader.LoadElf(m, Convert.FromBase64String(base64)));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void Segments_outside_ram_overlapping_each_other_or_the_boot_tables_are_refused_before_anything_is_written()
    {
        using var m = Ram();
        var outside = TestImages.Elf(32, 0x100000, [new TestSegment(0x100000, [0xf4]), new TestSegment(4 * MiB - 4, new byte[8])]);
        Assert.Contains("outside RAM", Assert.Throws<BootImageException>(() => ImageLoader.LoadElf(m, outside)).Message);
        Assert.Equal(new byte[] { 0 }, Read(m, 0x100000, 1)); // nothing written

        var overlapping = TestImages.Elf(32, 0x100000, [new TestSegment(0x100000, new byte[0x100]), new TestSegment(0x1000f0, new byte[0x10])]);
        Assert.Contains("overlap", Assert.Throws<BootImageException>(() => ImageLoader.LoadElf(m, overlapping)).Message);

        var onGdt = TestImages.Elf(32, 0x1000, [new TestSegment(0x1000, [0xf4])]);
        Assert.Contains("GDT", Assert.Throws<BootImageException>(() => ImageLoader.LoadElf(m, onGdt)).Message);

        var onPageTables = TestImages.Elf(64, 0xa000, [new TestSegment(0xa000, [0xf4])]);
        Assert.Contains("page directories", Assert.Throws<BootImageException>(() => ImageLoader.LoadElf(m, onPageTables)).Message);
        // ... which are only reserved in long mode:
        ImageLoader.LoadElf(m, onPageTables, CpuMode.Protected);

        var high = TestImages.Elf(64, 0x140000000, [new TestSegment(0x140000000, [0xf4])]);
        Assert.Contains("above 4 GiB", Assert.Throws<BootImageException>(() => ImageLoader.LoadElf(m, high, CpuMode.Protected)).Message);

        using var withRom = CpuSetupTests.Memory(new MemoryRegionSpec("ram", 0, 2 * MiB, false), new MemoryRegionSpec("rom", 2 * MiB, 1 * MiB, true));
        var inRom = TestImages.Elf(32, 0x200000, [new TestSegment(0x200000, [0xf4])]);
        Assert.Contains("outside RAM", Assert.Throws<BootImageException>(() => ImageLoader.LoadElf(withRom, inRom)).Message);
    }
}

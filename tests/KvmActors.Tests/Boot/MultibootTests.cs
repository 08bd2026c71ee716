using System.Text;
using KvmActors.Runtime.Boot;
using KvmActors.Runtime.Memory;
using Xunit;
using O = KvmActors.Runtime.Boot.Multiboot.InfoOffsets;

namespace KvmActors.Tests.Boot;

/// <summary>Multiboot v1 header search, kernel loading, module placement and the information structure (no KVM).</summary>
public sealed class MultibootTests
{
    private const ulong MiB = 1UL << 20;
    private const uint Align = Multiboot.FlagPageAlignModules | Multiboot.FlagMemoryInfo;

    private static GuestMemory Ram(ulong size = 4 * MiB) => CpuSetupTests.Ram(size);

    private static byte[] Read(IGuestMemory m, ulong address, int length)
    {
        var b = new byte[length];
        m.Read(address, b);
        return b;
    }

    private static uint R32(IGuestMemory m, ulong address) => TestImages.R32(Read(m, address, 4), 0);

    private static string CString(IGuestMemory m, ulong address)
    {
        var bytes = new List<byte>();
        for (var a = address; ; a++)
        {
            var b = Read(m, a, 1)[0];
            if (b == 0) return Encoding.UTF8.GetString(bytes.ToArray());
            bytes.Add(b);
        }
    }

    /// <summary>An ELF32 Multiboot kernel at 1 MiB: header first in the segment, then HLT; memsz 0x3000.</summary>
    private static byte[] ElfKernel(uint flags = Align, ulong load = 0x100000, ulong memsz = 0x3000) =>
        TestImages.Elf(32, load + 12, [new TestSegment(load, TestImages.Concat(TestImages.MultibootHeader(flags), [0xf4]), MemorySize: memsz)]);

    // ---- header search ----

    [Fact]
    public void Header_is_found_only_4_byte_aligned_and_completely_within_the_first_8KiB()
    {
        var header = TestImages.MultibootHeader(Align);
        Assert.Equal(0, Multiboot.FindHeader(header)!.FileOffset);
        Assert.Equal(8, Multiboot.FindHeader(TestImages.Concat(new byte[8], header))!.FileOffset);
        Assert.Equal(8180, Multiboot.FindHeader(TestImages.Concat(new byte[8180], header))!.FileOffset);
        Assert.Null(Multiboot.FindHeader(TestImages.Concat(new byte[6], header, new byte[2])));  // misaligned
        Assert.Null(Multiboot.FindHeader(TestImages.Concat(new byte[8192], header)));            // beyond 8 KiB
        Assert.Throws<BootImageException>(() => Multiboot.FindHeader(TestImages.Concat(new byte[8188], header))); // straddles 8 KiB
        Assert.Null(Multiboot.FindHeader(new byte[100]));
        Assert.False(Multiboot.IsMultiboot(new byte[100]));
        Assert.True(Multiboot.IsMultiboot(ElfKernel()));
    }

    [Fact]
    public void A_magic_with_a_bad_checksum_is_skipped_for_a_later_valid_header_and_reported_otherwise()
    {
        var bad = TestImages.MultibootHeader(Align, checksum: 0x12345678);
        var good = TestImages.MultibootHeader(Align);
        Assert.Equal(12, Multiboot.FindHeader(TestImages.Concat(bad, good))!.FileOffset);
        var e = Assert.Throws<BootImageException>(() => Multiboot.FindHeader(bad));
        Assert.Contains("bad Multiboot header checksum", e.Message);
    }

    [Fact]
    public void Header_errors()
    {
        Assert.Contains("truncated", Assert.Throws<BootImageException>(() => Multiboot.FindHeader(TestImages.MultibootHeader(Align)[..8])).Message);
        var withAddresses = TestImages.MultibootHeader(Multiboot.FlagAddressFields, addresses: (0x100000, 0x100000, 0, 0, 0x100020));
        Assert.Contains("truncated", Assert.Throws<BootImageException>(() => Multiboot.FindHeader(withAddresses[..20])).Message);
        Assert.Contains("no Multiboot header", Assert.Throws<BootImageException>(() => Multiboot.RequireHeader(new byte[64])).Message);
        Assert.Contains("video mode", Assert.Throws<BootImageException>(() => Multiboot.RequireHeader(TestImages.MultibootHeader(Multiboot.FlagVideoMode))).Message);
        Assert.Contains("0x20", Assert.Throws<BootImageException>(() => Multiboot.RequireHeader(TestImages.MultibootHeader(1u << 5))).Message);
        Multiboot.RequireHeader(TestImages.MultibootHeader(Align | (1u << 20))); // optional bits are fine
    }

    [Fact]
    public void Without_address_fields_the_image_must_be_elf()
    {
        using var m = Ram();
        var flat = TestImages.Concat(TestImages.MultibootHeader(Align), new byte[64]);
        var e = Assert.Throws<BootImageException>(() => Multiboot.Load(m, flat, "k"));
        Assert.Contains("not ELF", e.Message);
    }

    // ---- address fields (flag bit 16) ----

    private static byte[] AoutKernel(uint headerAddr, uint loadAddr, uint loadEnd, uint bssEnd, uint entry, int headerOffset = 0x20, int tail = 0x40)
    {
        var header = TestImages.MultibootHeader(Multiboot.FlagAddressFields, addresses: (headerAddr, loadAddr, loadEnd, bssEnd, entry));
        var body = Enumerable.Range(0, tail).Select(i => (byte)(i + 1)).ToArray();
        return TestImages.Concat(Enumerable.Repeat((byte)0x77, headerOffset).ToArray(), header, body);
    }

    [Fact]
    public void Address_fields_load_from_the_header_relative_file_offset_and_zero_the_bss()
    {
        using var m = Ram();
        m.Write(0x100000, Enumerable.Repeat((byte)0xee, 0x400).ToArray());
        // Header at file offset 0x20 claims address 0x100010, so the text starts at file offset 0x10 → 0x100000.
        var file = AoutKernel(headerAddr: 0x100010, loadAddr: 0x100000, loadEnd: 0x100070, bssEnd: 0x100200, entry: 0x100030);
        var image = Multiboot.Load(m, file, "aout");
        Assert.Equal((ImageFormat.Multiboot, 0x100030UL), (image.Format, image.EntryPoint));
        Assert.Equal((0x100000UL, 0x100200UL), (image.Segments.Single().Start, image.Segments.Single().End));
        Assert.Equal(file[0x10..0x80], Read(m, 0x100000, 0x70));
        Assert.All(Read(m, 0x100070, 0x190), b => Assert.Equal(0, b));
        Assert.Equal(0xee, Read(m, 0x100200, 1)[0]);
    }

    [Fact]
    public void Load_end_zero_means_the_rest_of_the_file_and_bss_end_zero_means_no_bss()
    {
        using var m = Ram();
        var file = AoutKernel(headerAddr: 0x100020, loadAddr: 0x100000, loadEnd: 0, bssEnd: 0, entry: 0x100040);
        var image = Multiboot.Load(m, file, "aout");
        Assert.Equal((0x100000UL, 0x100000UL + (ulong)file.Length), (image.Segments[0].Start, image.Segments[0].End));
        Assert.Equal(file, Read(m, 0x100000, file.Length));
    }

    public static TheoryData<uint, uint, uint, uint, uint, string> BadAddressFields() => new()
    {
        { 0x100000, 0x100010, 0, 0, 0x100010, "above header_addr" },
        { 0x100040, 0x100000, 0, 0, 0x100040, "before the file" },          // header 0x40 after load, but at file offset 0x20
        { 0x100020, 0x100000, 0x0ff000, 0, 0x100020, "below load_addr" },
        { 0x100020, 0x100000, 0x101000, 0, 0x100020, "truncated" },          // load_end beyond the file
        { 0x100020, 0x100000, 0x100060, 0x100050, 0x100020, "bss_end_addr" },
        { 0x100020, 0x100000, 0, 0, 0x300000, "entry point 0x300000 is outside" },
        { 0x3ff020, 0x3ff000, 0, 0x400800, 0x3ff020, "outside RAM" },
        { 0x4020, 0x4000, 0, 0, 0x4020, "Multiboot information area" },
        { 0x1020, 0x1000, 0, 0, 0x1020, "GDT" },
        { 0x20, 0x0, 0, 0, 0x20, "page 0" },
    };

    [Theory]
    [MemberData(nameof(BadAddressFields))]
    public void Bad_address_fields_fail_with_a_clear_message(uint headerAddr, uint loadAddr, uint loadEnd, uint bssEnd, uint entry, string expected)
    {
        using var m = Ram();
        var e = Assert.Throws<BootImageException>(() => Multiboot.Load(m, AoutKernel(headerAddr, loadAddr, loadEnd, bssEnd, entry), "bad"));
        Assert.Contains(expected, e.Message);
    }

    // ---- the information structure ----

    [Fact]
    public void Info_structure_has_flags_memory_cmdline_modules_mmap_and_loader_name()
    {
        using var m = CpuSetupTests.Memory(new MemoryRegionSpec("ram", 0, 4 * MiB, false), new MemoryRegionSpec("bios", 0xfffc0000, 0x40000, true));
        var image = Multiboot.Load(m, ElfKernel(), "/boot/kernel.elf", "  root=/dev/vda  ",
        [
            new MultibootModule("initrd", Enumerable.Repeat((byte)0x5a, 5000).ToArray()),
            new MultibootModule("empty arg=1", Array.Empty<byte>()),
            new MultibootModule("third", "xyz"u8.ToArray()),
        ]);
        var info = image.MultibootInfoAddress!.Value;
        Assert.Equal(BootLayout.MultibootInfoAddress, info);

        Assert.Equal(Multiboot.InfoMemory | Multiboot.InfoCmdline | Multiboot.InfoMods | Multiboot.InfoMmap | Multiboot.InfoBootLoaderName, R32(m, info + O.Flags));
        Assert.Equal(640u, R32(m, info + O.MemLower));
        Assert.Equal(3u * 1024, R32(m, info + O.MemUpper));
        Assert.Equal("/boot/kernel.elf root=/dev/vda", CString(m, R32(m, info + O.Cmdline)));
        Assert.Equal("KvmActors", CString(m, R32(m, info + O.BootLoaderName)));

        // Modules: page-aligned, above the kernel (which ends at 0x103000), disjoint, with their strings and bytes.
        Assert.Equal(3u, R32(m, info + O.ModsCount));
        var mods = R32(m, info + O.ModsAddr);
        var starts = new List<uint>();
        var previousEnd = 0x103000u;
        var expected = new[] { ("initrd", 5000u), ("empty arg=1", 0u), ("third", 3u) };
        for (var i = 0; i < 3; i++)
        {
            var start = R32(m, mods + (ulong)(16 * i));
            var end = R32(m, mods + (ulong)(16 * i) + 4);
            Assert.Equal(0u, start % 4096);
            Assert.True(start >= previousEnd, $"module {i} at 0x{start:x} overlaps what precedes it (0x{previousEnd:x})");
            Assert.Equal(expected[i].Item2, end - start);
            Assert.Equal(expected[i].Item1, CString(m, R32(m, mods + (ulong)(16 * i) + 8)));
            Assert.Equal(0u, R32(m, mods + (ulong)(16 * i) + 12));
            Assert.Equal((ulong)start, image.Modules![i].Start);
            previousEnd = Math.Max(end, start + 1);
            starts.Add(start);
        }
        Assert.All(Read(m, starts[0], 5000), b => Assert.Equal(0x5a, b));
        Assert.Equal("xyz"u8.ToArray(), Read(m, starts[2], 3));

        // Memory map: one entry per region, size field 20, RAM type 1, ROM type 2.
        Assert.Equal(48u, R32(m, info + O.MmapLength));
        var mmap = R32(m, info + O.MmapAddr);
        var e0 = Read(m, mmap, 24);
        var e1 = Read(m, mmap + 24, 24);
        Assert.Equal((20u, 0UL, 4 * MiB, 1u), (TestImages.R32(e0, 0), TestImages.R64(e0, 4), TestImages.R64(e0, 12), TestImages.R32(e0, 20)));
        Assert.Equal((20u, 0xfffc0000UL, 0x40000UL, 2u), (TestImages.R32(e1, 0), TestImages.R64(e1, 4), TestImages.R64(e1, 12), TestImages.R32(e1, 20)));

        // Everything the info points at lies in the boot-data range, which overlaps neither the kernel nor the modules.
        var boot = image.BootData!.Value;
        Assert.True(boot.End <= BootLayout.MultibootInfoAreaEnd);
        foreach (var r in image.Segments.Concat(image.Modules!)) Assert.False(boot.Overlaps(r));
    }

    [Fact]
    public void Empty_command_line_is_just_the_program_name_and_no_modules_means_mods_count_zero()
    {
        using var m = Ram();
        var image = Multiboot.Load(m, ElfKernel(), "kernel", null);
        var info = image.MultibootInfoAddress!.Value;
        Assert.Equal("kernel", CString(m, R32(m, info + O.Cmdline)));
        Assert.Equal(0u, R32(m, info + O.ModsCount));
        Assert.Empty(image.Modules!);
    }

    [Fact]
    public void Info_too_large_for_the_fixed_area_goes_to_free_ram_clear_of_kernel_and_modules()
    {
        using var m = Ram();
        var longCmdline = new string('x', 10_000);
        var image = Multiboot.Load(m, ElfKernel(), "k", longCmdline, [new MultibootModule("mod", new byte[100])]);
        var info = image.MultibootInfoAddress!.Value;
        Assert.NotEqual(BootLayout.MultibootInfoAddress, info);
        Assert.Equal(0UL, info % BootLayout.PageSize);
        var boot = image.BootData!.Value;
        foreach (var r in image.Segments.Concat(image.Modules!)) Assert.False(boot.Overlaps(r), $"{boot} overlaps {r}");
        Assert.Equal("k " + longCmdline, CString(m, R32(m, info + O.Cmdline)));
    }

    [Fact]
    public void Modules_that_do_not_fit_fail_clearly()
    {
        using var m = Ram(2 * MiB);
        var e = Assert.Throws<BootImageException>(() => Multiboot.Load(m, ElfKernel(), "k", "", [new MultibootModule("huge", new byte[3 * MiB])]));
        Assert.Contains("huge", e.Message);
        Assert.Contains("does not fit", e.Message);
    }

    [Fact]
    public void Modules_go_below_the_kernel_when_there_is_no_room_above_it()
    {
        using var m = Ram(2 * MiB);
        var image = Multiboot.Load(m, ElfKernel(memsz: 0xff000), "k", "", [new MultibootModule("low", new byte[0x2000])]);
        var mod = image.Modules!.Single();
        Assert.True(mod.End <= 0x100000);
        foreach (var r in BootLayout.Reserved(CpuMode.Protected, 2 * MiB, multiboot: true)) Assert.False(mod.Overlaps(r), $"{mod} overlaps {r}");
    }

    [Theory]
    [InlineData(0UL, 512 * 1024UL, 0UL, 0UL, 512u, 0u)]            // only low memory
    [InlineData(0UL, 640 * 1024UL, 1UL << 20, 7UL << 20, 640u, 7168u)] // classic PC split
    [InlineData(0UL, 1UL << 20, 1UL << 20, 2UL << 20, 640u, 2048u)]    // adjacent regions join
    [InlineData(0x1000UL, 1UL << 20, 0UL, 0UL, 0u, 4u)]              // RAM not at 0: no lower memory; 4 KiB above 1 MiB
    public void Memory_sizes_come_from_the_ram_regions(ulong a0, ulong s0, ulong a1, ulong s1, uint lower, uint upper)
    {
        var regions = new List<MemoryRegionSpec> { new("r0", a0, s0, false) };
        if (s1 != 0) regions.Add(new("r1", a1, s1, false));
        regions.Add(new("rom", 0xffff0000, 0x10000, true));
        using var m = CpuSetupTests.Memory(regions.ToArray());
        var (l, u) = Multiboot.MemorySizesKiB(m);
        Assert.Equal(lower, l);
        Assert.Equal(upper, u);
    }

    [Fact]
    public void Elf64_multiboot_kernel_is_accepted_and_entered_at_its_physical_entry()
    {
        using var m = Ram();
        var segment = TestImages.Concat(TestImages.MultibootHeader(Align), [0xf4]);
        var elf = TestImages.Elf(64, 0x10000c, [new TestSegment(0x100000, segment)]);
        var image = Multiboot.Load(m, elf, "k64");
        Assert.Equal((ImageFormat.Multiboot, 0x10000cUL, CpuMode.Protected), (image.Format, image.EntryPoint, image.NaturalMode!.Value));
        Assert.Equal(Multiboot.BootloaderMagic, CpuSetup.MultibootRegs(image).Rax);
        Assert.Equal(BootLayout.MultibootInfoAddress, CpuSetup.MultibootRegs(image).Rbx);
    }
}

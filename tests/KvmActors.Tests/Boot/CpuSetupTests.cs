using KvmActors.Runtime.Boot;
using KvmActors.Runtime.Kvm;
using KvmActors.Runtime.Memory;
using Xunit;

namespace KvmActors.Tests.Boot;

/// <summary>Boot layout, GDT and page tables, entry special registers: pure code over host-mapped guest memory (no KVM).</summary>
public sealed class CpuSetupTests
{
    private const ulong MiB = 1UL << 20, GiB = 1UL << 30;

    internal static GuestMemory Memory(params MemoryRegionSpec[] regions) => GuestMemory.Create(null, regions);
    internal static GuestMemory Ram(ulong size = 2 * MiB) => Memory(new MemoryRegionSpec("ram", 0, size, false));

    private static ulong Read64(IGuestMemory m, ulong address)
    {
        var b = new byte[8];
        m.Read(address, b);
        return BitConverter.ToUInt64(b);
    }

    [Fact]
    public void Fixed_boot_areas_are_below_1MiB_above_page_0_outside_the_boot_sector_area_and_disjoint()
    {
        var areas = BootLayout.Reserved(CpuMode.Long, 8 * GiB, multiboot: true).Where(r => r.Name != "page 0").ToList();
        Assert.Equal(6, areas.Count);
        foreach (var a in areas)
        {
            Assert.True(a.Start >= BootLayout.Page0End, a.ToString());
            Assert.True(a.End <= 1 * MiB, a.ToString());
            Assert.False(a.Overlaps(new GuestRange(BootLayout.FreeLowStart, BootLayout.FreeLowEnd)), a.ToString());
            Assert.Equal(0UL, a.Start % BootLayout.PageSize);
        }
        for (var i = 0; i < areas.Count; i++)
            for (var j = 0; j < i; j++)
                Assert.False(areas[i].Overlaps(areas[j]), $"{areas[i]} overlaps {areas[j]}");
        Assert.True(BootLayout.PageDirectoriesAddress + (ulong)BootLayout.MaxPageDirectories * BootLayout.PageSize <= BootLayout.PageDirectoriesLimit);
        Assert.True(BootLayout.KvmIdentityMapAddress + BootLayout.PageSize <= BootLayout.KvmTssAddress);
    }

    [Fact]
    public void Reserved_areas_depend_on_the_mode()
    {
        Assert.Equal(["page 0"], BootLayout.Reserved(CpuMode.Real).Select(r => r.Name));
        Assert.Equal(["page 0", "GDT", "boot stack"], BootLayout.Reserved(CpuMode.Protected).Select(r => r.Name));
        var longMode = BootLayout.Reserved(CpuMode.Long, 2 * MiB);
        Assert.Contains(longMode, r => r.Name == "page directories" && r.Length == 4 * BootLayout.PageSize);
        Assert.Contains(BootLayout.Reserved(CpuMode.Long, 6 * GiB + 1), r => r.Name == "page directories" && r.Length == 7 * BootLayout.PageSize);
    }

    [Fact]
    public void Gdt_descriptors_are_the_flat_code32_data_and_code64_segments()
    {
        // Reference values from the descriptor format in Intel SDM vol. 3 §3.4.5.
        Assert.Equal(0UL, CpuSetup.GdtDescriptors[0]);
        Assert.Equal(0x00CF9B000000FFFFUL, CpuSetup.GdtDescriptors[BootLayout.Code32Selector / 8]);
        Assert.Equal(0x00CF93000000FFFFUL, CpuSetup.GdtDescriptors[BootLayout.DataSelector / 8]);
        Assert.Equal(0x00AF9B000000FFFFUL, CpuSetup.GdtDescriptors[BootLayout.Code64Selector / 8]);
        Assert.Equal(BootLayout.GdtEntries, CpuSetup.GdtDescriptors.Count);
    }

    [Fact]
    public void Protected_mode_writes_only_the_gdt()
    {
        using var m = Ram();
        CpuSetup.WriteBootTables(m, CpuMode.Protected);
        Assert.Equal(0x00CF9B000000FFFFUL, Read64(m, BootLayout.GdtAddress + BootLayout.Code32Selector));
        Assert.Equal(0UL, Read64(m, BootLayout.Pml4Address));
    }

    [Fact]
    public void Real_mode_writes_nothing()
    {
        using var m = Memory(new MemoryRegionSpec("high", 1 * MiB, 1 * MiB, false)); // no low RAM at all
        CpuSetup.WriteBootTables(m, CpuMode.Real);
    }

    [Fact]
    public void Long_mode_identity_maps_the_first_4GiB_with_2MiB_pages()
    {
        using var m = Ram();
        CpuSetup.WriteBootTables(m, CpuMode.Long);
        Assert.Equal(BootLayout.PdptAddress | 3, Read64(m, BootLayout.Pml4Address));
        Assert.Equal(0UL, Read64(m, BootLayout.Pml4Address + 8));
        for (var i = 0UL; i < 4; i++)
            Assert.Equal((BootLayout.PageDirectoriesAddress + i * 0x1000) | 3, Read64(m, BootLayout.PdptAddress + i * 8));
        Assert.Equal(0UL, Read64(m, BootLayout.PdptAddress + 4 * 8));
        Assert.Equal(0x83UL, Read64(m, BootLayout.PageDirectoriesAddress));
        Assert.Equal((2 * MiB) | 0x83, Read64(m, BootLayout.PageDirectoriesAddress + 8));
        // The last 2 MiB page below 4 GiB maps 0xffe00000.
        Assert.Equal(0xffe00000UL | 0x83, Read64(m, BootLayout.PageDirectoriesAddress + 3 * 0x1000 + 511 * 8));
        Assert.Equal(0x00AF9B000000FFFFUL, Read64(m, BootLayout.GdtAddress + BootLayout.Code64Selector));
    }

    [Fact]
    public void Long_mode_maps_all_memory_when_there_is_more_than_4GiB()
    {
        using var m = Memory(new MemoryRegionSpec("ram", 0, 2 * MiB, false), new MemoryRegionSpec("high", 9 * GiB, 4096, false));
        CpuSetup.WriteBootTables(m, CpuMode.Long);
        Assert.Equal((BootLayout.PageDirectoriesAddress + 9 * 0x1000) | 3, Read64(m, BootLayout.PdptAddress + 9 * 8));
        Assert.Equal(0UL, Read64(m, BootLayout.PdptAddress + 10 * 8));
        Assert.Equal((9 * GiB + 2 * MiB) | 0x83, Read64(m, BootLayout.PageDirectoriesAddress + 9 * 0x1000 + 8));
    }

    [Fact]
    public void Tables_outside_ram_fail_clearly()
    {
        using var high = Memory(new MemoryRegionSpec("high", 1 * MiB, 1 * MiB, false));
        var e = Assert.Throws<BootSetupException>(() => CpuSetup.WriteBootTables(high, CpuMode.Protected));
        Assert.Contains("GDT", e.Message);

        using var small = Memory(new MemoryRegionSpec("ram", 0, 0xb000, false)); // GDT and PML4 fit, page directories do not
        e = Assert.Throws<BootSetupException>(() => CpuSetup.WriteBootTables(small, CpuMode.Long));
        Assert.Contains("page directories", e.Message);

        using var rom = Memory(new MemoryRegionSpec("rom", 0, 2 * MiB, true));
        Assert.Throws<BootSetupException>(() => CpuSetup.WriteBootTables(rom, CpuMode.Protected));
    }

    [Fact]
    public void Memory_too_large_for_the_page_directory_area_fails_clearly()
    {
        using var m = Memory(new MemoryRegionSpec("ram", 0, 2 * MiB, false), new MemoryRegionSpec("far", 200 * GiB, 4096, false));
        var e = Assert.Throws<BootSetupException>(() => CpuSetup.WriteBootTables(m, CpuMode.Long));
        Assert.Contains("page directories", e.Message);
    }

    private static KvmSregs ResetLike() => new()
    {
        Cs = new KvmSegment { Selector = 0xf000, Base = 0xffff0000, Limit = 0xffff, Type = 0xb, Present = 1, S = 1 },
        Ds = new KvmSegment { Limit = 0xffff, Type = 3, Present = 1, S = 1 },
        Tr = new KvmSegment { Limit = 0xffff, Type = 0xb, Present = 1 },
        Ldt = new KvmSegment { Limit = 0xffff, Type = 2, Present = 1 },
        Cr0 = 0x60000010,
        ApicBase = 0xfee00900,
    };

    [Fact]
    public void Real_mode_sregs_have_zero_segments_with_real_mode_limits()
    {
        var s = CpuSetup.EntrySregs(ResetLike(), CpuMode.Real);
        foreach (var seg in new[] { s.Cs, s.Ds, s.Es, s.Fs, s.Gs, s.Ss })
        {
            Assert.Equal(0, seg.Selector);
            Assert.Equal(0UL, seg.Base);
            Assert.Equal(0xffffu, seg.Limit);
            Assert.Equal(0, seg.Db);
        }
        Assert.Equal(0UL, s.Cr0 & (CpuSetup.Cr0Pe | CpuSetup.Cr0Pg));
        Assert.Equal(0xfee00900UL, s.ApicBase);
    }

    [Fact]
    public void Protected_mode_sregs_are_flat_32_bit_without_paging()
    {
        var s = CpuSetup.EntrySregs(ResetLike(), CpuMode.Protected);
        Assert.Equal(BootLayout.Code32Selector, s.Cs.Selector);
        Assert.Equal((1, 0, 1, 0xffffffffu, 0UL), (s.Cs.Db, s.Cs.L, s.Cs.G, s.Cs.Limit, s.Cs.Base));
        foreach (var seg in new[] { s.Ds, s.Es, s.Fs, s.Gs, s.Ss })
            Assert.Equal((BootLayout.DataSelector, (byte)1, 0xffffffffu, CpuSetup.DataType), (seg.Selector, seg.Db, seg.Limit, seg.Type));
        Assert.Equal(CpuSetup.Cr0Pe, s.Cr0 & (CpuSetup.Cr0Pe | CpuSetup.Cr0Pg | CpuSetup.Cr0Cd | CpuSetup.Cr0Nw));
        Assert.Equal(0UL, s.Efer & (CpuSetup.EferLme | CpuSetup.EferLma));
        Assert.Equal((BootLayout.GdtAddress, (ushort)31), (s.Gdt.Base, s.Gdt.Limit));
        Assert.Equal(CpuSetup.BusyTssType, s.Tr.Type);
    }

    [Fact]
    public void Long_mode_sregs_enable_paging_pae_and_lma()
    {
        var s = CpuSetup.EntrySregs(ResetLike(), CpuMode.Long);
        Assert.Equal(BootLayout.Code64Selector, s.Cs.Selector);
        Assert.Equal((1, 0), (s.Cs.L, s.Cs.Db));
        Assert.Equal(CpuSetup.Cr0Pe | CpuSetup.Cr0Pg, s.Cr0 & (CpuSetup.Cr0Pe | CpuSetup.Cr0Pg));
        Assert.Equal(CpuSetup.Cr4Pae, s.Cr4 & CpuSetup.Cr4Pae);
        Assert.Equal(CpuSetup.EferLme | CpuSetup.EferLma, s.Efer);
        Assert.Equal(BootLayout.Pml4Address, s.Cr3);
    }

    [Fact]
    public void Entry_regs_start_with_only_the_reserved_flag_set()
    {
        var r = CpuSetup.EntryRegs(0x1234, rax: 5, rbx: 6);
        Assert.Equal((0x1234UL, BootLayout.BootStackTop, 5UL, 6UL, 2UL), (r.Rip, r.Rsp, r.Rax, r.Rbx, r.Rflags));
    }
}

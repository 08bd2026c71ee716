namespace KvmActors.Runtime.Boot;

/// <summary>
/// Every fixed guest-physical address the boot code uses, in one place.
/// <code>
///   0x00000-0x00fff  page 0: never written (real-mode IVT and BIOS data area; keeps null pointers unmapped-looking)
///   0x01000-0x01fff  GDT (protected and long mode); the descriptors are listed below
///   0x02000-0x02fff  PML4 (long mode)
///   0x03000-0x03fff  PDPT (long mode); one PDPT maps 512 GiB
///   0x04000-0x05fff  Multiboot information area: info structure, memory map, module list, strings
///   0x06000-0x06fff  boot stack; the initial stack pointer is 0x7000 (grows down)
///   0x07000-0x09fff  deliberately left free: the legacy boot-sector area (0x7c00) for flat real-mode guests
///   0x0a000-...      page directories (long mode), one 4 KiB page per GiB mapped with 2 MiB pages:
///                    0xa000-0xdfff for the first 4 GiB, more pages above for RAM beyond 4 GiB,
///                    never past 0x80000 (so at most 118 GiB can be identity-mapped)
///   0xfffbc000       KVM identity-map page (KVM_SET_IDENTITY_MAP_ADDR), one page
///   0xfffbd000       KVM real-mode TSS (KVM_SET_TSS_ADDR), three pages up to 0xfffc0000
/// </code>
/// Everything the boot code writes lies below 1 MiB (above page 0, outside 0x7000-0x9fff);
/// the KVM-private pages must not be covered by a memory region.
/// Only the tables a mode needs are written: real mode writes nothing; protected mode writes the GDT;
/// long mode writes the GDT and the page tables; a Multiboot boot also writes the info area.
/// </summary>
public static class BootLayout
{
    public const ulong PageSize = 0x1000;

    /// <summary>Page 0 is never used for boot data, images or modules.</summary>
    public const ulong Page0End = 0x1000;

    /// <summary>The GDT (see the selector constants for its descriptors).</summary>
    public const ulong GdtAddress = 0x1000;
    /// <summary>Bytes reserved for the GDT.</summary>
    public const ulong GdtAreaSize = 0x1000;

    /// <summary>Null descriptor.</summary>
    public const ushort NullSelector = 0x00;
    /// <summary>Flat 32-bit code: base 0, limit 4 GiB, G=1, D=1, execute/read.</summary>
    public const ushort Code32Selector = 0x08;
    /// <summary>Flat data: base 0, limit 4 GiB, G=1, B=1, read/write (used for DS/ES/FS/GS/SS in both modes).</summary>
    public const ushort DataSelector = 0x10;
    /// <summary>64-bit code: L=1, D=0, G=1, execute/read.</summary>
    public const ushort Code64Selector = 0x18;
    /// <summary>Number of descriptors written (null, code32, data, code64).</summary>
    public const int GdtEntries = 4;

    /// <summary>Long mode: the PML4 (one entry used).</summary>
    public const ulong Pml4Address = 0x2000;
    /// <summary>Long mode: the single PDPT; entry i points at the page directory for GiB i.</summary>
    public const ulong PdptAddress = 0x3000;
    /// <summary>Long mode: first page directory; page directory i (GiB i) is at PageDirectoriesAddress + i * 4 KiB.</summary>
    public const ulong PageDirectoriesAddress = 0xa000;
    /// <summary>Long mode: page directories never extend past this address.</summary>
    public const ulong PageDirectoriesLimit = 0x80000;
    /// <summary>Long mode always maps at least this much (the first 4 GiB, MMIO holes included).</summary>
    public const ulong MinIdentityMapped = 4UL << 30;

    /// <summary>Multiboot: the information structure and everything it points at start here when they fit.</summary>
    public const ulong MultibootInfoAddress = 0x4000;
    /// <summary>Multiboot: end (exclusive) of the fixed information area; larger info goes to free RAM elsewhere.</summary>
    public const ulong MultibootInfoAreaEnd = 0x6000;

    /// <summary>Boot stack: [BootStackBottom, BootStackTop); the entry stack pointer is BootStackTop.</summary>
    public const ulong BootStackBottom = 0x6000;
    public const ulong BootStackTop = 0x7000;

    /// <summary>The legacy boot-sector area the boot code keeps free: [0x7000, 0xa000).</summary>
    public const ulong FreeLowStart = 0x7000;
    public const ulong FreeLowEnd = 0xa000;

    /// <summary>KVM_SET_IDENTITY_MAP_ADDR: one page, below the TSS.</summary>
    public const ulong KvmIdentityMapAddress = 0xfffbc000;
    /// <summary>KVM_SET_TSS_ADDR: three pages.</summary>
    public const ulong KvmTssAddress = 0xfffbd000;
    public const ulong KvmTssSize = 3 * PageSize;

    /// <summary>Number of page directories long mode uses for memory whose top is <paramref name="memoryTop"/>.</summary>
    public static int PageDirectoryCount(ulong memoryTop)
    {
        var mapped = Math.Max(MinIdentityMapped, memoryTop);
        return checked((int)((mapped + (1UL << 30) - 1) >> 30));
    }

    /// <summary>Highest page directory count that fits below <see cref="PageDirectoriesLimit"/>.</summary>
    public static int MaxPageDirectories => (int)((PageDirectoriesLimit - PageDirectoriesAddress) / PageSize);

    /// <summary>
    /// The guest ranges the boot code writes for <paramref name="mode"/>: loaded images must not overlap them.
    /// <paramref name="memoryTop"/> is the end of the highest memory region (it sizes the long-mode page directories).
    /// Page 0 is included unless <paramref name="bootTables"/> is false (<c>cpu.boot-tables = none</c>): then the
    /// VMM writes no GDT, page tables or stack, and only the Multiboot information area is reserved.
    /// </summary>
    public static IReadOnlyList<GuestRange> Reserved(CpuMode mode, ulong memoryTop = 0, bool multiboot = false, bool bootTables = true)
    {
        if (!bootTables) return multiboot ? [new(MultibootInfoAddress, MultibootInfoAreaEnd, "Multiboot information area")] : [];
        var list = new List<GuestRange> { new(0, Page0End, "page 0") };
        if (mode is CpuMode.Protected or CpuMode.Long)
            list.Add(new(GdtAddress, GdtAddress + GdtAreaSize, "GDT"));
        if (mode is CpuMode.Long)
        {
            list.Add(new(Pml4Address, Pml4Address + PageSize, "PML4"));
            list.Add(new(PdptAddress, PdptAddress + PageSize, "PDPT"));
            list.Add(new(PageDirectoriesAddress, PageDirectoriesAddress + (ulong)PageDirectoryCount(memoryTop) * PageSize, "page directories"));
        }
        if (multiboot)
            list.Add(new(MultibootInfoAddress, MultibootInfoAreaEnd, "Multiboot information area"));
        if (mode is CpuMode.Protected or CpuMode.Long)
            list.Add(new(BootStackBottom, BootStackTop, "boot stack"));
        return list;
    }
}

/// <summary>A half-open guest-physical range [Start, End), with a name for error messages.</summary>
public readonly record struct GuestRange(ulong Start, ulong End, string Name = "")
{
    public ulong Length => End - Start;
    public bool Overlaps(GuestRange o) => Start < o.End && o.Start < End;
    public bool Contains(ulong address) => address >= Start && address < End;
    public override string ToString() => $"{(Name.Length > 0 ? Name + " " : "")}[0x{Start:x}, 0x{End:x})";
}

using System.Buffers.Binary;
using System.Text;
using KvmActors.Runtime.Memory;

namespace KvmActors.Runtime.Boot;

/// <summary>The Multiboot v1 header found in a kernel image (all fields as in the file).</summary>
public sealed record MultibootHeader(
    int FileOffset,
    uint Flags,
    uint Checksum,
    uint HeaderAddr,
    uint LoadAddr,
    uint LoadEndAddr,
    uint BssEndAddr,
    uint EntryAddr)
{
    /// <summary>Flag bit 16: the address fields are valid and say where to load the image.</summary>
    public bool HasAddressFields => (Flags & Multiboot.FlagAddressFields) != 0;
}

/// <summary>A Multiboot boot module: its bytes and its string (usually the module's name and arguments).</summary>
public sealed record MultibootModule(string CommandLine, ReadOnlyMemory<byte> Data);

/// <summary>
/// Multiboot v1: finds and checks the header, loads the kernel (by the header's address fields when flag bit 16 is
/// set, otherwise by its ELF program headers), copies the modules to page-aligned free RAM and builds the
/// information structure (memory sizes, command line, modules, memory map, boot loader name).
/// The kernel is entered in 32-bit protected mode with EAX=<see cref="BootloaderMagic"/> and EBX=the info address
/// (see <see cref="CpuSetup.EnterMultiboot"/>).
/// </summary>
public static class Multiboot
{
    public const uint HeaderMagic = 0x1BADB002;
    public const uint BootloaderMagic = 0x2BADB002;
    /// <summary>The header must lie, 4-byte aligned, within the first 8 KiB of the image.</summary>
    public const int SearchLimit = 8192;

    public const uint FlagPageAlignModules = 1u << 0;
    public const uint FlagMemoryInfo = 1u << 1;
    public const uint FlagVideoMode = 1u << 2;
    public const uint FlagAddressFields = 1u << 16;

    /// <summary>Information structure flags (which fields are valid).</summary>
    public const uint InfoMemory = 1u << 0;
    public const uint InfoCmdline = 1u << 2;
    public const uint InfoMods = 1u << 3;
    public const uint InfoMmap = 1u << 6;
    public const uint InfoBootLoaderName = 1u << 9;

    /// <summary>Size of the information structure up to and including the framebuffer fields.</summary>
    public const int InfoSize = 116;
    public const int MmapEntrySize = 24;   // size field (4) + base_addr (8) + length (8) + type (4)
    public const int ModuleEntrySize = 16; // mod_start, mod_end, string, reserved
    public const uint MemoryAvailable = 1;
    public const uint MemoryReserved = 2;

    public const string BootLoaderName = "KvmActors";

    /// <summary>Byte offsets of the information structure fields used here.</summary>
    public static class InfoOffsets
    {
        public const int Flags = 0, MemLower = 4, MemUpper = 8, BootDevice = 12, Cmdline = 16, ModsCount = 20, ModsAddr = 24;
        public const int MmapLength = 44, MmapAddr = 48, BootLoaderName = 64;
    }

    /// <summary>
    /// The first valid header (magic, 4-byte aligned, completely in the first 8 KiB, magic+flags+checksum == 0), or null when the
    /// image has no magic at all. A magic with a bad checksum and no valid header, or a header cut off by the end of the
    /// file, throws <see cref="BootImageException"/>.
    /// </summary>
    public static MultibootHeader? FindHeader(ReadOnlySpan<byte> image)
    {
        string? firstProblem = null;
        var limit = Math.Min(image.Length, SearchLimit);
        for (var off = 0; off + 4 <= limit; off += 4)
        {
            if (ImageLoader.U32(image, off) != HeaderMagic) continue;
            if (off + 12 > SearchLimit)
            {
                firstProblem ??= $"the Multiboot header at offset 0x{off:x} is not completely within the first {SearchLimit} bytes";
                continue;
            }
            if (off + 12 > image.Length)
            {
                firstProblem ??= $"the Multiboot header at offset 0x{off:x} is truncated: the file ends after {image.Length - off} of its 12 bytes";
                continue;
            }
            var flags = ImageLoader.U32(image, off + 4);
            var checksum = ImageLoader.U32(image, off + 8);
            if (unchecked(HeaderMagic + flags + checksum) != 0)
            {
                firstProblem ??= $"bad Multiboot header checksum at offset 0x{off:x}: magic 0x{HeaderMagic:x8} + flags 0x{flags:x8} + checksum 0x{checksum:x8} != 0";
                continue;
            }
            if ((flags & FlagAddressFields) != 0 && off + 32 > image.Length)
                throw new BootImageException($"the Multiboot header at offset 0x{off:x} sets flag bit 16 (address fields) but the file ends before its 32 bytes: truncated");
            if ((flags & FlagAddressFields) != 0 && off + 32 > SearchLimit)
                throw new BootImageException($"the Multiboot header at offset 0x{off:x} with address fields is not completely within the first {SearchLimit} bytes");
            var f = new uint[5];
            if ((flags & FlagAddressFields) != 0)
                for (var i = 0; i < f.Length; i++) f[i] = ImageLoader.U32(image, off + 12 + 4 * i);
            return new MultibootHeader(off, flags, checksum, f[0], f[1], f[2], f[3], f[4]);
        }
        if (firstProblem is not null) throw new BootImageException(firstProblem);
        return null;
    }

    /// <summary>Whether the image carries a valid Multiboot header.</summary>
    public static bool IsMultiboot(ReadOnlySpan<byte> image)
    {
        try { return FindHeader(image) is not null; }
        catch (BootImageException) { return false; }
    }

    /// <summary>The header, or <see cref="BootImageException"/> if there is none or it asks for something unsupported.</summary>
    public static MultibootHeader RequireHeader(ReadOnlySpan<byte> image)
    {
        var h = FindHeader(image) ?? throw new BootImageException(
            $"no Multiboot header (magic 0x{HeaderMagic:x8}, 4-byte aligned) in the first {SearchLimit} bytes of the image");
        if ((h.Flags & FlagVideoMode) != 0)
            throw new BootImageException("the Multiboot header requires a video mode (flag bit 2), which this VMM cannot provide");
        var unknown = h.Flags & 0xfff8u;
        if (unknown != 0)
            throw new BootImageException($"the Multiboot header sets required flag bits this loader does not know (0x{unknown:x}); flags 0x{h.Flags:x8}");
        return h;
    }

    /// <summary>
    /// The kernel's load plan without touching memory: the segments as (file offset, file bytes, memory size, address)
    /// and the entry point. Throws <see cref="BootImageException"/> for malformed images.
    /// </summary>
    public static (IReadOnlyList<ElfSegment> Segments, ulong Entry) PlanKernel(ReadOnlySpan<byte> image, MultibootHeader h)
    {
        if (h.HasAddressFields)
        {
            if (h.LoadAddr > h.HeaderAddr)
                throw new BootImageException($"Multiboot load_addr 0x{h.LoadAddr:x} is above header_addr 0x{h.HeaderAddr:x}");
            var delta = (ulong)(h.HeaderAddr - h.LoadAddr);
            if (delta > (ulong)h.FileOffset)
                throw new BootImageException($"Multiboot header_addr 0x{h.HeaderAddr:x} - load_addr 0x{h.LoadAddr:x} is larger than the header's file offset 0x{h.FileOffset:x}: the text would start before the file");
            var fileOffset = (ulong)h.FileOffset - delta;
            ulong loadSize;
            if (h.LoadEndAddr == 0) loadSize = (ulong)image.Length - fileOffset;
            else
            {
                if (h.LoadEndAddr < h.LoadAddr)
                    throw new BootImageException($"Multiboot load_end_addr 0x{h.LoadEndAddr:x} is below load_addr 0x{h.LoadAddr:x}");
                loadSize = h.LoadEndAddr - (ulong)h.LoadAddr;
                if (fileOffset + loadSize > (ulong)image.Length)
                    throw new BootImageException($"the Multiboot image is truncated: load_addr..load_end_addr needs 0x{loadSize:x} bytes from offset 0x{fileOffset:x}, the file has {image.Length}");
            }
            var memSize = loadSize;
            if (h.BssEndAddr != 0)
            {
                if (h.BssEndAddr < h.LoadAddr + loadSize)
                    throw new BootImageException($"Multiboot bss_end_addr 0x{h.BssEndAddr:x} is below the end of the loaded text and data (0x{h.LoadAddr + loadSize:x})");
                memSize = h.BssEndAddr - (ulong)h.LoadAddr;
            }
            if (memSize == 0) throw new BootImageException("the Multiboot address fields describe an empty image");
            return ([new ElfSegment(fileOffset, loadSize, memSize, h.LoadAddr, h.LoadAddr)], h.EntryAddr);
        }

        if (!ImageLoader.IsElf(image))
            throw new BootImageException("the Multiboot header has no address fields (flag bit 16 clear) and the image is not ELF, so there is no way to know where to load it");
        var elf = ImageLoader.ParseElf(image);
        return (elf.LoadSegments, elf.PhysicalEntry);
    }

    /// <summary>
    /// Load a Multiboot kernel, its modules and the information structure. The command line the kernel sees is
    /// <paramref name="programName"/> followed by <paramref name="commandLine"/>. Everything is planned and checked
    /// before memory is written.
    /// </summary>
    public static LoadedImage Load(IGuestMemory memory, ReadOnlySpan<byte> image, string programName, string? commandLine = null,
        IReadOnlyList<MultibootModule>? modules = null)
    {
        modules ??= [];
        var header = RequireHeader(image);
        var (segments, entry) = PlanKernel(image, header);

        var reserved = BootLayout.Reserved(CpuMode.Protected, CpuSetup.MemoryTop(memory), multiboot: true);
        var ranges = segments.Select((s, i) => new GuestRange(s.PhysicalAddress, s.PhysicalAddress + s.MemorySize, $"kernel segment {i}")).ToList();
        foreach (var r in ranges)
            if (r.End > 1UL << 32)
                throw new BootImageException($"{r} is above 4 GiB, unreachable from 32-bit protected mode");
        ImageLoader.CheckSegments(memory, ranges, reserved);
        ImageLoader.CheckEntry(entry, ranges, CpuMode.Protected);

        // Modules: page-aligned, above the kernel when possible, in RAM below 4 GiB, clear of everything else.
        var occupied = new List<GuestRange>(reserved);
        occupied.AddRange(ranges);
        var kernelEnd = ranges.Max(r => r.End);
        var moduleRanges = new List<GuestRange>();
        foreach (var m in modules)
        {
            var size = (ulong)m.Data.Length;
            var start = Allocate(memory, Math.Max(size, 1), BootLayout.PageSize, kernelEnd, occupied)
                        ?? Allocate(memory, Math.Max(size, 1), BootLayout.PageSize, BootLayout.Page0End, occupied)
                        ?? throw new BootImageException($"Multiboot module '{m.CommandLine}' ({size} bytes) does not fit in free RAM below 4 GiB (regions: {CpuSetup.DescribeRegions(memory)})");
            occupied.Add(new GuestRange(start, start + Math.Max(size, 1), $"module '{m.CommandLine}'"));
            moduleRanges.Add(new GuestRange(start, start + size, m.CommandLine));
        }

        // The information structure: in the fixed area if it fits there, else in free RAM.
        var cmdline = string.IsNullOrWhiteSpace(commandLine) ? programName : programName + " " + commandLine.Trim();
        var infoSize = (ulong)InfoBlobSize(memory, cmdline, modules);
        GuestRange infoArea;
        if (infoSize <= BootLayout.MultibootInfoAreaEnd - BootLayout.MultibootInfoAddress &&
            CpuSetup.IsRam(memory, BootLayout.MultibootInfoAddress, infoSize))
            infoArea = new GuestRange(BootLayout.MultibootInfoAddress, BootLayout.MultibootInfoAddress + infoSize, "Multiboot information");
        else
        {
            var a = Allocate(memory, infoSize, BootLayout.PageSize, kernelEnd, occupied)
                    ?? Allocate(memory, infoSize, BootLayout.PageSize, BootLayout.Page0End, occupied)
                    ?? throw new BootImageException($"the Multiboot information ({infoSize} bytes) does not fit in free RAM below 4 GiB");
            infoArea = new GuestRange(a, a + infoSize, "Multiboot information");
        }
        var blob = BuildInfo(memory, infoArea.Start, cmdline, modules, moduleRanges);

        foreach (var s in segments)
        {
            memory.Write(s.PhysicalAddress, image.Slice((int)s.FileOffset, (int)s.FileSize));
            ImageLoader.ZeroFill(memory, s.PhysicalAddress + s.FileSize, s.MemorySize - s.FileSize);
        }
        for (var i = 0; i < modules.Count; i++)
            memory.Write(moduleRanges[i].Start, modules[i].Data.Span);
        memory.Write(infoArea.Start, blob);

        return new LoadedImage(ImageFormat.Multiboot, entry, ranges, infoArea.Start, moduleRanges, infoArea);
    }

    private static int InfoBlobSize(IGuestMemory memory, string cmdline, IReadOnlyList<MultibootModule> modules) =>
        Align(InfoSize, 8) + memory.Regions.Count * MmapEntrySize + modules.Count * ModuleEntrySize +
        CString(BootLoaderName).Length + CString(cmdline).Length + modules.Sum(m => CString(m.CommandLine).Length);

    /// <summary>
    /// The information structure and what it points at, laid out for guest address <paramref name="address"/>:
    /// [info (116 bytes, padded to 120)] [memory map] [module list] [boot loader name] [command line] [module strings].
    /// </summary>
    public static byte[] BuildInfo(IGuestMemory memory, ulong address, string cmdline, IReadOnlyList<MultibootModule> modules, IReadOnlyList<GuestRange> moduleRanges)
    {
        var regions = memory.Regions.OrderBy(r => r.GuestAddress).ToList();
        var blob = new byte[InfoBlobSize(memory, cmdline, modules)];
        var span = blob.AsSpan();
        var mmapOff = Align(InfoSize, 8);
        var modsOff = mmapOff + regions.Count * MmapEntrySize;
        var stringsOff = modsOff + modules.Count * ModuleEntrySize;
        uint At(int offset) => checked((uint)(address + (ulong)offset));

        var (lower, upper) = MemorySizesKiB(memory);
        var flags = InfoMemory | InfoCmdline | InfoMods | InfoMmap | InfoBootLoaderName;
        W32(span, InfoOffsets.Flags, flags);
        W32(span, InfoOffsets.MemLower, lower);
        W32(span, InfoOffsets.MemUpper, upper);

        var next = stringsOff;
        int PutString(Span<byte> b, string s)
        {
            var bytes = CString(s);
            bytes.CopyTo(b[next..]);
            var at = next;
            next += bytes.Length;
            return at;
        }

        W32(span, InfoOffsets.BootLoaderName, At(PutString(span, BootLoaderName)));
        W32(span, InfoOffsets.Cmdline, At(PutString(span, cmdline)));

        W32(span, InfoOffsets.ModsCount, (uint)modules.Count);
        W32(span, InfoOffsets.ModsAddr, modules.Count == 0 ? 0 : At(modsOff));
        for (var i = 0; i < modules.Count; i++)
        {
            var e = span[(modsOff + i * ModuleEntrySize)..];
            W32(e, 0, checked((uint)moduleRanges[i].Start));
            W32(e, 4, checked((uint)moduleRanges[i].End));
            W32(e, 8, At(PutString(span, modules[i].CommandLine)));
            W32(e, 12, 0);
        }

        W32(span, InfoOffsets.MmapLength, (uint)(regions.Count * MmapEntrySize));
        W32(span, InfoOffsets.MmapAddr, At(mmapOff));
        for (var i = 0; i < regions.Count; i++)
        {
            var e = span[(mmapOff + i * MmapEntrySize)..];
            W32(e, 0, MmapEntrySize - 4);
            BinaryPrimitives.WriteUInt64LittleEndian(e[4..], regions[i].GuestAddress);
            BinaryPrimitives.WriteUInt64LittleEndian(e[12..], regions[i].Size);
            W32(e, 20, regions[i].ReadOnly ? MemoryReserved : MemoryAvailable);
        }
        return blob;
    }

    /// <summary>
    /// mem_lower: KiB of RAM contiguous from address 0 (at most 640); mem_upper: KiB of RAM contiguous from 1 MiB
    /// (0 if 1 MiB is not RAM). Adjacent read-write regions count as one run.
    /// </summary>
    public static (uint LowerKiB, uint UpperKiB) MemorySizesKiB(IGuestMemory memory)
    {
        var ram = memory.Regions.Where(r => !r.ReadOnly).OrderBy(r => r.GuestAddress).ToList();
        ulong RunFrom(ulong start)
        {
            var end = start;
            foreach (var r in ram)
                if (r.GuestAddress <= end && r.GuestAddress + r.Size > end) end = r.GuestAddress + r.Size;
            return end - start;
        }
        var lower = Math.Min(RunFrom(0), 640UL * 1024) / 1024;
        var upper = Math.Min(RunFrom(1UL << 20), (1UL << 32) - (1UL << 20)) / 1024;
        return ((uint)lower, (uint)upper);
    }

    /// <summary>
    /// First-fit: the lowest <paramref name="align"/>-aligned address at or above <paramref name="minimum"/> where
    /// <paramref name="size"/> bytes fit in one read-write region below 4 GiB without touching <paramref name="occupied"/>.
    /// </summary>
    public static ulong? Allocate(IGuestMemory memory, ulong size, ulong align, ulong minimum, IReadOnlyList<GuestRange> occupied)
    {
        const ulong limit = 1UL << 32;
        foreach (var r in memory.Regions.Where(r => !r.ReadOnly).OrderBy(r => r.GuestAddress))
        {
            var end = Math.Min(r.GuestAddress + r.Size, limit);
            var candidate = AlignUp(Math.Max(r.GuestAddress, minimum), align);
            while (candidate < end && size <= end - candidate)
            {
                var clash = occupied.Where(o => o.Overlaps(new GuestRange(candidate, candidate + size))).Select(o => (GuestRange?)o).FirstOrDefault();
                if (clash is null) return candidate;
                candidate = AlignUp(clash.Value.End, align);
            }
        }
        return null;
    }

    private static ulong AlignUp(ulong v, ulong a) => (v + a - 1) / a * a;
    private static int Align(int v, int a) => (v + a - 1) / a * a;
    private static byte[] CString(string s) => Encoding.UTF8.GetBytes(s + "\0");
    private static void W32(Span<byte> b, int o, uint v) => BinaryPrimitives.WriteUInt32LittleEndian(b[o..], v);
}

using System.Buffers.Binary;
using KvmActors.Runtime.Memory;

namespace KvmActors.Runtime.Boot;

/// <summary>One PT_LOAD program header: <see cref="FileSize"/> bytes from <see cref="FileOffset"/> go to
/// <see cref="PhysicalAddress"/>, and the rest up to <see cref="MemorySize"/> is zero-filled.</summary>
public readonly record struct ElfSegment(ulong FileOffset, ulong FileSize, ulong MemorySize, ulong PhysicalAddress, ulong VirtualAddress);

/// <summary>The parts of an ELF executable a loader needs (ELF spec: file header and program headers).</summary>
public sealed record ElfImage(int Bits, ushort Machine, ulong Entry, IReadOnlyList<ElfSegment> LoadSegments)
{
    /// <summary>
    /// The entry point as a physical address: when e_entry lies in a segment's virtual range and that segment's
    /// physical address differs, the entry is translated into its physical range (the image runs with paging off,
    /// or identity-mapped); otherwise e_entry as is.
    /// </summary>
    public ulong PhysicalEntry
    {
        get
        {
            foreach (var s in LoadSegments)
                if (Entry >= s.VirtualAddress && Entry - s.VirtualAddress < s.MemorySize)
                    return Entry - s.VirtualAddress + s.PhysicalAddress;
            return Entry;
        }
    }
}

/// <summary>
/// Loads flat binaries and ELF32/ELF64 executables into guest memory. Everything is checked before anything is
/// written: the segments must lie in RAM, must not overlap each other, and must not overlap the boot structures
/// (<see cref="BootLayout.Reserved"/>); a malformed image throws <see cref="BootImageException"/>.
/// </summary>
public static class ImageLoader
{
    public const ushort EmI386 = 3;
    public const ushort EmX8664 = 62;
    public const ushort EtExec = 2;
    public const uint PtLoad = 1;

    /// <summary>
    /// Copy <paramref name="image"/> to <paramref name="address"/>. The entry point defaults to the load address.
    /// The image must not overlap what <paramref name="mode"/> reserves (page 0 and, outside real mode, the boot tables;
    /// nothing when <paramref name="bootTables"/> is false).
    /// </summary>
    public static LoadedImage LoadFlat(IGuestMemory memory, ReadOnlySpan<byte> image, ulong address, CpuMode mode = CpuMode.Real, ulong? entry = null,
        bool bootTables = true)
    {
        if (image.Length == 0) throw new BootImageException("the flat image is empty");
        if (address > ulong.MaxValue - (ulong)image.Length)
            throw new BootImageException($"the flat image ({image.Length} bytes at 0x{address:x}) runs past the end of the address space");
        var segment = new GuestRange(address, address + (ulong)image.Length, "flat image");
        CheckSegments(memory, [segment], BootLayout.Reserved(mode, CpuSetup.MemoryTop(memory), bootTables: bootTables));
        memory.Write(address, image);
        return new LoadedImage(ImageFormat.Flat, entry ?? address, [segment]);
    }

    /// <summary>Whether the bytes start with the ELF magic.</summary>
    public static bool IsElf(ReadOnlySpan<byte> image) =>
        image.Length >= 4 && image[0] == 0x7f && image[1] == (byte)'E' && image[2] == (byte)'L' && image[3] == (byte)'F';

    /// <summary>Parse an x86 ELF32 (EM_386) or ELF64 (EM_X86_64) little-endian executable's headers.</summary>
    public static ElfImage ParseElf(ReadOnlySpan<byte> image)
    {
        if (!IsElf(image)) throw new BootImageException("not an ELF file (no \\x7fELF magic)");
        if (image.Length < 16) throw new BootImageException($"truncated ELF header: {image.Length} bytes");
        var bits = image[4] switch
        {
            1 => 32,
            2 => 64,
            var c => throw new BootImageException($"bad ELF class {c} (expected 1 for ELF32 or 2 for ELF64)"),
        };
        if (image[5] != 1) throw new BootImageException($"unsupported ELF data encoding {image[5]} (only little-endian, 1, is x86)");
        if (image[6] != 1) throw new BootImageException($"unsupported ELF version {image[6]}");
        var headerSize = bits == 32 ? 52 : 64;
        if (image.Length < headerSize) throw new BootImageException($"truncated ELF{bits} header: {image.Length} of {headerSize} bytes");

        var type = U16(image, 16);
        var machine = U16(image, 18);
        if (type != EtExec) throw new BootImageException($"ELF type {type} is not an executable (ET_EXEC = 2); relocatable and shared objects are not loadable");
        var expectedMachine = bits == 32 ? EmI386 : EmX8664;
        if (machine != expectedMachine)
            throw new BootImageException($"ELF{bits} machine {machine} is not {(bits == 32 ? "EM_386 (3)" : "EM_X86_64 (62)")}");

        ulong entry, phoff;
        int phentsize, phnum;
        if (bits == 32)
        {
            entry = U32(image, 24); phoff = U32(image, 28);
            phentsize = U16(image, 42); phnum = U16(image, 44);
        }
        else
        {
            entry = U64(image, 24); phoff = U64(image, 32);
            phentsize = U16(image, 54); phnum = U16(image, 56);
        }
        var minEntSize = bits == 32 ? 32 : 56;
        if (phnum == 0) throw new BootImageException("the ELF file has no program headers");
        if (phnum == 0xffff) throw new BootImageException("the ELF file uses extended program header numbering (PN_XNUM), which is not supported");
        if (phentsize < minEntSize) throw new BootImageException($"ELF program header entry size {phentsize} is smaller than {minEntSize}");
        var tableSize = (ulong)phentsize * (ulong)phnum;
        if (phoff > (ulong)image.Length || tableSize > (ulong)image.Length - phoff)
            throw new BootImageException($"truncated ELF program header table: {phnum} x {phentsize} bytes at offset 0x{phoff:x}, file is {image.Length} bytes");

        var segments = new List<ElfSegment>();
        for (var i = 0; i < phnum; i++)
        {
            var p = image.Slice((int)(phoff + (ulong)(i * phentsize)), phentsize);
            if (U32(p, 0) != PtLoad) continue;
            ElfSegment s = bits == 32
                ? new(FileOffset: U32(p, 4), FileSize: U32(p, 16), MemorySize: U32(p, 20), PhysicalAddress: U32(p, 12), VirtualAddress: U32(p, 8))
                : new(FileOffset: U64(p, 8), FileSize: U64(p, 32), MemorySize: U64(p, 40), PhysicalAddress: U64(p, 24), VirtualAddress: U64(p, 16));
            if (s.FileSize > s.MemorySize)
                throw new BootImageException($"ELF program header {i}: p_filesz 0x{s.FileSize:x} is larger than p_memsz 0x{s.MemorySize:x}");
            if (s.FileOffset > (ulong)image.Length || s.FileSize > (ulong)image.Length - s.FileOffset)
                throw new BootImageException($"ELF program header {i}: file bytes [0x{s.FileOffset:x}, +0x{s.FileSize:x}) run past the end of the {image.Length}-byte file");
            if (s.PhysicalAddress > ulong.MaxValue - s.MemorySize)
                throw new BootImageException($"ELF program header {i}: segment at 0x{s.PhysicalAddress:x} size 0x{s.MemorySize:x} wraps the address space");
            if (s.MemorySize == 0) continue;
            segments.Add(s);
        }
        if (segments.Count == 0) throw new BootImageException("the ELF file has no PT_LOAD segment with a non-zero size");
        return new ElfImage(bits, machine, entry, segments);
    }

    /// <summary>
    /// Load an ELF executable by its PT_LOAD program headers at their physical addresses (p_paddr), copying p_filesz
    /// bytes and zero-filling to p_memsz. The entry point is e_entry (translated to physical, see <see cref="ElfImage.PhysicalEntry"/>).
    /// The segments must not overlap what the image's natural mode reserves (ELF32: protected, ELF64: long), or
    /// <paramref name="mode"/> if given.
    /// </summary>
    public static LoadedImage LoadElf(IGuestMemory memory, ReadOnlySpan<byte> image, CpuMode? mode = null, bool bootTables = true)
    {
        var elf = ParseElf(image);
        var format = elf.Bits == 32 ? ImageFormat.Elf32 : ImageFormat.Elf64;
        var effectiveMode = mode ?? (elf.Bits == 32 ? CpuMode.Protected : CpuMode.Long);
        return LoadElfSegments(memory, image, elf, format, BootLayout.Reserved(effectiveMode, CpuSetup.MemoryTop(memory), bootTables: bootTables), effectiveMode);
    }

    internal static LoadedImage LoadElfSegments(IGuestMemory memory, ReadOnlySpan<byte> image, ElfImage elf, ImageFormat format, IReadOnlyList<GuestRange> reserved, CpuMode mode)
    {
        var ranges = elf.LoadSegments.Select((s, i) => new GuestRange(s.PhysicalAddress, s.PhysicalAddress + s.MemorySize, $"ELF segment {i}")).ToList();
        if (mode != CpuMode.Long)
            foreach (var r in ranges)
                if (r.End > 1UL << 32)
                    throw new BootImageException($"{r} is above 4 GiB, unreachable in {mode} mode");
        CheckSegments(memory, ranges, reserved);
        var entry = elf.PhysicalEntry;
        CheckEntry(entry, ranges, mode);
        foreach (var s in elf.LoadSegments)
        {
            memory.Write(s.PhysicalAddress, image.Slice((int)s.FileOffset, (int)s.FileSize));
            ZeroFill(memory, s.PhysicalAddress + s.FileSize, s.MemorySize - s.FileSize);
        }
        return new LoadedImage(format, entry, ranges);
    }

    internal static void CheckEntry(ulong entry, IReadOnlyList<GuestRange> segments, CpuMode mode)
    {
        if (!segments.Any(s => s.Contains(entry)))
            throw new BootImageException($"the entry point 0x{entry:x} is outside every loaded segment ({string.Join(", ", segments)})");
        if (mode != CpuMode.Long && entry > uint.MaxValue)
            throw new BootImageException($"the entry point 0x{entry:x} is above 4 GiB, unreachable in {mode} mode");
    }

    /// <summary>
    /// Every segment must be in writable RAM, must not overlap another segment, and must not overlap a reserved range.
    /// </summary>
    public static void CheckSegments(IGuestMemory memory, IReadOnlyList<GuestRange> segments, IReadOnlyList<GuestRange> reserved)
    {
        for (var i = 0; i < segments.Count; i++)
        {
            var s = segments[i];
            if (s.End < s.Start) throw new BootImageException($"{s} wraps the address space");
            if (!CpuSetup.IsRam(memory, s.Start, s.Length))
                throw new BootImageException($"{s} is outside RAM: it must lie within one read-write memory region (regions: {CpuSetup.DescribeRegions(memory)})");
            for (var j = 0; j < i; j++)
                if (s.Overlaps(segments[j]))
                    throw new BootImageException($"{segments[j]} and {s} overlap");
            foreach (var r in reserved)
                if (s.Overlaps(r))
                    throw new BootImageException($"{s} overlaps the boot area {r} (see BootLayout)");
        }
    }

    internal static void ZeroFill(IGuestMemory memory, ulong address, ulong length)
    {
        if (length == 0) return;
        var zeros = new byte[(int)Math.Min(length, 1UL << 20)];
        while (length > 0)
        {
            var n = (int)Math.Min(length, (ulong)zeros.Length);
            memory.Write(address, zeros.AsSpan(0, n));
            address += (ulong)n;
            length -= (ulong)n;
        }
    }

    internal static ushort U16(ReadOnlySpan<byte> b, int o) => BinaryPrimitives.ReadUInt16LittleEndian(b[o..]);
    internal static uint U32(ReadOnlySpan<byte> b, int o) => BinaryPrimitives.ReadUInt32LittleEndian(b[o..]);
    internal static ulong U64(ReadOnlySpan<byte> b, int o) => BinaryPrimitives.ReadUInt64LittleEndian(b[o..]);
}

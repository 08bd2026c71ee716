using System.Buffers.Binary;
using KvmActors.Runtime.Boot;

namespace KvmActors.Tests.Boot;

/// <summary>A segment for <see cref="TestImages.Elf"/>: bytes at a physical (and virtual) address, zero-filled to MemorySize.</summary>
internal sealed record TestSegment(ulong PhysicalAddress, byte[] Data, ulong MemorySize = 0, ulong? VirtualAddress = null, uint Type = 1);

/// <summary>Small ELF and Multiboot images built from byte arrays (ELF spec layouts, little-endian).</summary>
internal static class TestImages
{
    public const int Elf32HeaderSize = 52, Elf32PhdrSize = 32, Elf64HeaderSize = 64, Elf64PhdrSize = 56;

    /// <summary>
    /// An ELF executable: header, program header table right after it, then each segment's bytes at 16-byte aligned
    /// offsets. <paramref name="machine"/> defaults to EM_386 / EM_X86_64.
    /// </summary>
    public static byte[] Elf(int bits, ulong entry, IReadOnlyList<TestSegment> segments, ushort? machine = null, ushort type = 2)
    {
        var headerSize = bits == 32 ? Elf32HeaderSize : Elf64HeaderSize;
        var phdrSize = bits == 32 ? Elf32PhdrSize : Elf64PhdrSize;
        var offset = Align(headerSize + phdrSize * segments.Count, 16);
        var offsets = new List<int>();
        foreach (var s in segments) { offsets.Add(offset); offset = Align(offset + s.Data.Length, 16); }
        var file = new byte[offset];
        var f = file.AsSpan();
        f[0] = 0x7f; f[1] = (byte)'E'; f[2] = (byte)'L'; f[3] = (byte)'F';
        f[4] = (byte)(bits == 32 ? 1 : 2); f[5] = 1; f[6] = 1;
        W16(f, 16, type);
        W16(f, 18, machine ?? (ushort)(bits == 32 ? 3 : 62));
        W32(f, 20, 1);
        if (bits == 32)
        {
            W32(f, 24, (uint)entry); W32(f, 28, (uint)headerSize);
            W16(f, 40, (ushort)headerSize); W16(f, 42, (ushort)phdrSize); W16(f, 44, (ushort)segments.Count);
        }
        else
        {
            W64(f, 24, entry); W64(f, 32, (ulong)headerSize);
            W16(f, 52, (ushort)headerSize); W16(f, 54, (ushort)phdrSize); W16(f, 56, (ushort)segments.Count);
        }
        for (var i = 0; i < segments.Count; i++)
        {
            var s = segments[i];
            var p = f[(headerSize + i * phdrSize)..];
            var memsz = Math.Max(s.MemorySize, (ulong)s.Data.Length);
            var vaddr = s.VirtualAddress ?? s.PhysicalAddress;
            if (bits == 32)
            {
                W32(p, 0, s.Type); W32(p, 4, (uint)offsets[i]); W32(p, 8, (uint)vaddr); W32(p, 12, (uint)s.PhysicalAddress);
                W32(p, 16, (uint)s.Data.Length); W32(p, 20, (uint)memsz); W32(p, 24, 7); W32(p, 28, 0x1000);
            }
            else
            {
                W32(p, 0, s.Type); W32(p, 4, 7); W64(p, 8, (ulong)offsets[i]); W64(p, 16, vaddr); W64(p, 24, s.PhysicalAddress);
                W64(p, 32, (ulong)s.Data.Length); W64(p, 40, memsz); W64(p, 48, 0x1000);
            }
            s.Data.CopyTo(f[offsets[i]..]);
        }
        return file;
    }

    /// <summary>Offset of segment <paramref name="index"/>'s bytes in a file made by <see cref="Elf"/>.</summary>
    public static int SegmentFileOffset(int bits, IReadOnlyList<TestSegment> segments, int index)
    {
        var offset = Align((bits == 32 ? Elf32HeaderSize : Elf64HeaderSize) + (bits == 32 ? Elf32PhdrSize : Elf64PhdrSize) * segments.Count, 16);
        for (var i = 0; i < index; i++) offset = Align(offset + segments[i].Data.Length, 16);
        return offset;
    }

    /// <summary>A Multiboot header: magic, flags, checksum, and (when given) the five address fields.</summary>
    public static byte[] MultibootHeader(uint flags, uint? checksum = null, (uint Header, uint Load, uint LoadEnd, uint BssEnd, uint Entry)? addresses = null)
    {
        var h = new byte[addresses is null ? 12 : 32];
        W32(h, 0, Multiboot.HeaderMagic);
        W32(h, 4, flags);
        W32(h, 8, checksum ?? unchecked(0u - Multiboot.HeaderMagic - flags));
        if (addresses is { } a)
        {
            W32(h, 12, a.Header); W32(h, 16, a.Load); W32(h, 20, a.LoadEnd); W32(h, 24, a.BssEnd); W32(h, 28, a.Entry);
        }
        return h;
    }

    public static byte[] Concat(params byte[][] parts) => parts.SelectMany(p => p).ToArray();

    public static int Align(int v, int a) => (v + a - 1) / a * a;
    public static void W16(Span<byte> b, int o, ushort v) => BinaryPrimitives.WriteUInt16LittleEndian(b[o..], v);
    public static void W32(Span<byte> b, int o, uint v) => BinaryPrimitives.WriteUInt32LittleEndian(b[o..], v);
    public static void W64(Span<byte> b, int o, ulong v) => BinaryPrimitives.WriteUInt64LittleEndian(b[o..], v);
    public static uint R32(ReadOnlySpan<byte> b, int o) => BinaryPrimitives.ReadUInt32LittleEndian(b[o..]);
    public static ulong R64(ReadOnlySpan<byte> b, int o) => BinaryPrimitives.ReadUInt64LittleEndian(b[o..]);
}

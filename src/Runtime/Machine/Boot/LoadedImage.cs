namespace KvmActors.Runtime.Boot;

public enum ImageFormat { Flat, Elf32, Elf64, Multiboot }

/// <summary>
/// What a loader put into guest memory.
/// <para><see cref="Segments"/> are the loaded image's [start, end) ranges (zero-filled tails included).
/// For a Multiboot boot, <see cref="MultibootInfoAddress"/> is the value for EBX, <see cref="Modules"/> are the
/// modules' [start, end) ranges named by their strings, and <see cref="BootData"/> is where the information
/// structure and its memory map, module list and strings went.</para>
/// </summary>
public sealed record LoadedImage(
    ImageFormat Format,
    ulong EntryPoint,
    IReadOnlyList<GuestRange> Segments,
    ulong? MultibootInfoAddress = null,
    IReadOnlyList<GuestRange>? Modules = null,
    GuestRange? BootData = null)
{
    /// <summary>The mode this image expects to be entered in (flat binaries: whatever the caller loaded them for).</summary>
    public CpuMode? NaturalMode => Format switch
    {
        ImageFormat.Elf32 or ImageFormat.Multiboot => CpuMode.Protected,
        ImageFormat.Elf64 => CpuMode.Long,
        _ => null,
    };

    /// <summary>Lowest start of any segment.</summary>
    public ulong Start => Segments.Count == 0 ? 0 : Segments.Min(s => s.Start);
    /// <summary>Highest end of any segment.</summary>
    public ulong End => Segments.Count == 0 ? 0 : Segments.Max(s => s.End);

    public override string ToString() =>
        $"{Format} image, entry 0x{EntryPoint:x}, segments {string.Join(", ", Segments)}" +
        (MultibootInfoAddress is { } i ? $", Multiboot info at 0x{i:x}" : "") +
        (Modules is { Count: > 0 } m ? $", modules {string.Join(", ", m)}" : "");
}

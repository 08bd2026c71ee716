using System.Buffers.Binary;
using System.Text;
using KvmActors.Sdk;

namespace KvmActors.Devices.FwCfg;

/// <summary>
/// The items a <c>fw-cfg</c> device serves, by selector key. Numeric items are little-endian, as QEMU's
/// fw_cfg specification defines them. Items are set once at device creation; the table is meant to grow
/// (kernel command line, named file items) without changing the device.
/// </summary>
/// <remarks>
/// Keys 0x0000-0x001f are fixed-meaning items (<see cref="Signature"/>, <see cref="Id"/>, ...); keys from
/// <see cref="FirstFileKey"/> up are file items, listed in the big-endian file directory at
/// <see cref="FileDirectory"/>, which <see cref="AddFile"/> keeps up to date. Bit 15 of a key
/// (<see cref="ArchLocal"/>) marks architecture-specific items and is part of the key; bit 14
/// (<see cref="WriteChannel"/>) is a flag of the selector, not of the key.
/// </remarks>
public sealed class FwCfgItems
{
    public const ushort Signature = 0x0000;
    public const ushort Id = 0x0001;
    public const ushort RamSize = 0x0003;
    public const ushort NbCpus = 0x0005;
    public const ushort KernelCmdline = 0x0009;
    public const ushort FileDirectory = 0x0019;
    public const ushort FirstFileKey = 0x0020;
    public const ushort WriteChannel = 0x4000;
    public const ushort ArchLocal = 0x8000;

    /// <summary>FW_CFG_ID bit 0: the traditional selector/data interface. Always set.</summary>
    public const uint IdTraditional = 0x1;
    /// <summary>FW_CFG_ID bit 1: the DMA interface (not implemented here).</summary>
    public const uint IdDma = 0x2;

    /// <summary>Length of the name field of a file directory entry, NUL-terminated.</summary>
    public const int FileNameLength = 56;

    private readonly Dictionary<ushort, byte[]> _items = new();
    private readonly List<(string Name, ushort Key, uint Size)> _files = new();

    /// <summary>The items of a machine: signature, ID (traditional interface only), RAM size and CPU count.</summary>
    public static FwCfgItems ForMachine(MachineInfo machine)
    {
        var items = new FwCfgItems();
        items.Set(Signature, "QEMU"u8);
        items.SetU32(Id, IdTraditional);
        items.SetU64(RamSize, machine.RamSize);
        items.SetU16(NbCpus, checked((ushort)machine.VcpuCount));
        return items;
    }

    /// <summary>The key an item is stored under, from a selector value: without the write-channel flag.</summary>
    public static ushort KeyOf(ushort selector) => (ushort)(selector & ~WriteChannel);

    public IReadOnlyCollection<ushort> Keys => _items.Keys;

    /// <summary>The item's bytes; empty for a key with no item (which the guest reads as zeros).</summary>
    public ReadOnlySpan<byte> Get(ushort key) => _items.TryGetValue(KeyOf(key), out var data) ? data : ReadOnlySpan<byte>.Empty;

    public bool Contains(ushort key) => _items.ContainsKey(KeyOf(key));

    /// <summary>Sets (or replaces) a fixed-meaning item. File items go through <see cref="AddFile"/>.</summary>
    public void Set(ushort key, ReadOnlySpan<byte> data)
    {
        key = KeyOf(key);
        if (key == FileDirectory || ((key & ArchLocal) == 0 && key >= FirstFileKey))
            throw new ArgumentException($"fw_cfg key 0x{key:x4} is for the file directory or file items: use AddFile", nameof(key));
        _items[key] = data.ToArray();
    }

    public void SetU16(ushort key, ushort value) { Span<byte> b = stackalloc byte[2]; BinaryPrimitives.WriteUInt16LittleEndian(b, value); Set(key, b); }
    public void SetU32(ushort key, uint value) { Span<byte> b = stackalloc byte[4]; BinaryPrimitives.WriteUInt32LittleEndian(b, value); Set(key, b); }
    public void SetU64(ushort key, ulong value) { Span<byte> b = stackalloc byte[8]; BinaryPrimitives.WriteUInt64LittleEndian(b, value); Set(key, b); }

    /// <summary>A string item, NUL-terminated (how QEMU serves the kernel command line).</summary>
    public void SetString(ushort key, string value)
    {
        var bytes = new byte[Encoding.UTF8.GetByteCount(value) + 1];
        Encoding.UTF8.GetBytes(value, bytes);
        Set(key, bytes);
    }

    /// <summary>
    /// Adds a named file item (e.g. <c>etc/boot-fail-wait</c>) under the next free key from
    /// <see cref="FirstFileKey"/> and rewrites the file directory. Returns the key.
    /// </summary>
    public ushort AddFile(string name, ReadOnlySpan<byte> data)
    {
        var nameBytes = Encoding.UTF8.GetByteCount(name);
        if (name.Length == 0 || nameBytes >= FileNameLength)
            throw new ArgumentException($"fw_cfg file name '{name}' must be 1..{FileNameLength - 1} bytes", nameof(name));
        if (_files.Any(f => f.Name == name))
            throw new ArgumentException($"fw_cfg file '{name}' already exists", nameof(name));
        var key = (ushort)(FirstFileKey + _files.Count);
        if (key >= WriteChannel) throw new InvalidOperationException("fw_cfg file keys exhausted");
        _items[key] = data.ToArray();
        _files.Add((name, key, (uint)data.Length));
        _items[FileDirectory] = BuildDirectory();
        return key;
    }

    /// <summary>
    /// The file directory: a big-endian u32 count, then per file a 64-byte entry: big-endian u32 size,
    /// big-endian u16 key, u16 reserved, 56-byte NUL-padded name. Entries are sorted by name.
    /// </summary>
    private byte[] BuildDirectory()
    {
        const int entrySize = 4 + 2 + 2 + FileNameLength;
        var dir = new byte[4 + _files.Count * entrySize];
        BinaryPrimitives.WriteUInt32BigEndian(dir, (uint)_files.Count);
        var at = 4;
        foreach (var (name, key, size) in _files.OrderBy(f => f.Name, StringComparer.Ordinal))
        {
            BinaryPrimitives.WriteUInt32BigEndian(dir.AsSpan(at), size);
            BinaryPrimitives.WriteUInt16BigEndian(dir.AsSpan(at + 4), key);
            Encoding.UTF8.GetBytes(name, dir.AsSpan(at + 8, FileNameLength));
            at += entrySize;
        }
        return dir;
    }
}

using KvmActors.Sdk;

namespace KvmActors.Devices.FwCfg;

/// <summary>
/// The traditional fw_cfg interface over an item table: a selector that picks an item and rewinds the data
/// offset, and a data register that reads the item one byte at a time.
/// </summary>
public sealed class FwCfgPort(FwCfgItems items)
{
    private int _offset;

    public FwCfgItems Items { get; } = items;
    /// <summary>The last value written to the selector (with its flag bits).</summary>
    public ushort Selector { get; private set; }
    public int Offset => _offset;

    /// <summary>Selects an item and sets the data offset to zero.</summary>
    public void Select(ushort selector)
    {
        Selector = selector;
        _offset = 0;
    }

    /// <summary>The next byte of the selected item; 0 past its end (or for an item that does not exist).</summary>
    public byte ReadByte()
    {
        var data = Items.Get(Selector);
        if (_offset >= data.Length) return 0;
        return data[_offset++];
    }

    /// <summary><paramref name="size"/> consecutive bytes, the first in the lowest-order byte (so a wide read stores them in order on x86).</summary>
    public ulong Read(int size)
    {
        ulong v = 0;
        for (var i = 0; i < size; i++) v |= (ulong)ReadByte() << (8 * i);
        return v;
    }
}

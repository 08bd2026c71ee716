using KvmActors.Sdk;

namespace KvmActors.Devices.FwCfg;

/// <summary>A <see cref="FwCfgPort"/>'s state: the selector as written (with its flag bits) and the data offset in that item.</summary>
public sealed record FwCfgPortState(ushort Selector, int Offset);

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

    public FwCfgPortState Save() => new(Selector, _offset);

    /// <summary>Takes a saved selector and offset; the offset must lie within the selected item (or at its end).</summary>
    public void Restore(FwCfgPortState state)
    {
        var length = Items.Get(state.Selector).Length;
        if (state.Offset < 0 || state.Offset > length)
            throw new DeviceStateException($"fw-cfg state: offset: {state.Offset} is outside item 0x{FwCfgItems.KeyOf(state.Selector):x4} ({length} bytes)");
        Selector = state.Selector;
        _offset = state.Offset;
    }
}

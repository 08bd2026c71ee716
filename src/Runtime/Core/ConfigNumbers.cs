using System.Globalization;

namespace KvmActors;

/// <summary>Numbers as guest configs write them: decimal, 0x-hex, with optional K/M/G (binary) suffix.</summary>
public static class ConfigNumbers
{
    public static bool TryParse(string? text, out ulong value)
    {
        value = 0;
        if (string.IsNullOrWhiteSpace(text)) return false;
        var s = text.Trim().Replace("_", "");
        ulong mult = 1;
        var upper = s.ToUpperInvariant();
        foreach (var (suffix, m) in new[] { ("KIB", 1UL << 10), ("MIB", 1UL << 20), ("GIB", 1UL << 30), ("K", 1UL << 10), ("M", 1UL << 20), ("G", 1UL << 30) })
        {
            if (upper.EndsWith(suffix) && !upper.StartsWith("0X"))
            {
                mult = m; s = s[..^suffix.Length]; break;
            }
        }
        bool ok;
        ulong v;
        if (s.StartsWith("0x", StringComparison.OrdinalIgnoreCase))
            ok = ulong.TryParse(s.AsSpan(2), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out v);
        else
            ok = ulong.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out v);
        if (!ok) return false;
        try { value = checked(v * mult); } catch (OverflowException) { return false; }
        return true;
    }
}

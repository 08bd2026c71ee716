using System.Globalization;

namespace KvmActors;

/// <summary>
/// Scalars as KvmActors configs write them: numbers (decimal, 0x-hex, optional K/M/G binary suffix), ranges
/// ("0x3f8-0x3ff"), HOCON booleans and HOCON durations. Text only: the HOCON readers build on these.
/// </summary>
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

    /// <summary>Parses "0x3f8-0x3ff", "0x3f8" or a number into an inclusive range.</summary>
    public static bool TryParseRange(string? text, out ulong first, out ulong last)
    {
        first = last = 0;
        if (text is null) return false;
        var dash = text.IndexOf('-');
        if (dash < 0) { var ok = TryParse(text, out first); last = first; return ok; }
        return TryParse(text[..dash], out first) && TryParse(text[(dash + 1)..], out last) && last >= first;
    }

    /// <summary>HOCON's booleans: true/yes/on and false/no/off (any case).</summary>
    public static bool TryParseBool(string? text, out bool value)
    {
        value = false;
        switch (text?.Trim().ToLowerInvariant())
        {
            case "true" or "yes" or "on": value = true; return true;
            case "false" or "no" or "off": return true;
            default: return false;
        }
    }

    private static readonly (string[] Units, double Ticks)[] DurationUnits =
    [
        (["ns", "nano", "nanos", "nanosecond", "nanoseconds"], 0.01),
        (["us", "micro", "micros", "microsecond", "microseconds"], 10),
        (["ms", "milli", "millis", "millisecond", "milliseconds"], TimeSpan.TicksPerMillisecond),
        (["s", "second", "seconds"], TimeSpan.TicksPerSecond),
        (["m", "minute", "minutes"], TimeSpan.TicksPerMinute),
        (["h", "hour", "hours"], TimeSpan.TicksPerHour),
        (["d", "day", "days"], TimeSpan.TicksPerDay),
    ];

    /// <summary>A HOCON duration: a number with a unit (ns, us, ms, s, m, h, d or their long names); no unit is ms.</summary>
    public static bool TryParseDuration(string? text, out TimeSpan value)
    {
        value = default;
        if (string.IsNullOrWhiteSpace(text)) return false;
        var s = text.Trim();
        var split = s.Length;
        while (split > 0 && char.IsAsciiLetter(s[split - 1])) split--;
        var unit = s[split..].ToLowerInvariant();
        var ticksPer = unit.Length == 0 ? TimeSpan.TicksPerMillisecond : DurationUnits.FirstOrDefault(u => u.Units.Contains(unit)).Ticks;
        if (ticksPer == 0) return false;
        if (!double.TryParse(s[..split].Trim(), NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var n)) return false;
        var ticks = n * ticksPer;
        if (double.IsNaN(ticks) || ticks >= TimeSpan.MaxValue.Ticks) return false;
        value = TimeSpan.FromTicks((long)ticks);
        return true;
    }
}

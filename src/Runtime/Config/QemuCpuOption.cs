using System.Globalization;
using KvmActors.Runtime.Boot;

namespace KvmActors.Runtime.Config;

/// <summary>
/// QEMU's <c>-cpu MODEL[,+F][,-F][,F=on|off][,vendor=V][,family=N][,model=N][,stepping=N][,model-id=S]</c> as
/// <c>guest.cpuid</c> lines of a guest file: the model name and feature names are checked here (a bad one is a
/// <see cref="FormatException"/> naming it, for the caller's usage error); KVM's support is checked when the VM starts.
/// </summary>
public static class QemuCpuOption
{
    public static IReadOnlyList<string> ToHocon(string value)
    {
        var parts = value.Split(',');
        var model = CpuModels.Find(parts[0])
                    ?? throw new FormatException($"-cpu {value}: '{parts[0]}' is not a CPU model KvmActors provides ({string.Join(", ", CpuModels.Names)})");
        var lines = new List<string> { $"cpuid.model = {Quote(model)}" };
        var features = new List<string>();
        foreach (var part in parts.Skip(1))
        {
            var eq = part.IndexOf('=');
            var (key, val) = eq < 0 ? (part, null) : (part[..eq], part[(eq + 1)..]);
            switch (key)
            {
                case "vendor": lines.Add($"cpuid.vendor = {Quote(val!)}"); break;
                case "model-id": lines.Add($"cpuid.brand = {Quote(val!)}"); break;
                case "family": lines.Add($"cpuid.family = {Number(value, key, val)}"); break;
                case "model": lines.Add($"cpuid.model-number = {Number(value, key, val)}"); break;
                case "stepping": lines.Add($"cpuid.stepping = {Number(value, key, val)}"); break;
                default:
                    var sign = key.Length > 1 && key[0] is '+' or '-' && val is null ? key[0]
                        : val is "on" or "true" or "yes" ? '+' : val is "off" or "false" or "no" ? '-' : ' ';
                    var name = sign != ' ' && val is null ? key[1..] : key;
                    if (sign == ' ' || CpuidFeatures.Canonical(name) is not { } known)
                        throw new FormatException($"-cpu {value}: '{part}' is not supported (+F, -F or F=on|off for a CPUID feature; vendor=, family=, model=, stepping=, model-id=)");
                    features.Add($"{sign}{known}");
                    break;
            }
        }
        if (features.Count > 0) lines.Add($"cpuid.features = [{string.Join(", ", features.Select(Quote))}]");
        return lines;
    }

    private static string Number(string value, string key, string? text) =>
        text is not null && (int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var n)
                             || (text.StartsWith("0x") && int.TryParse(text[2..], NumberStyles.HexNumber, CultureInfo.InvariantCulture, out n)))
            ? n.ToString(CultureInfo.InvariantCulture)
            : throw new FormatException($"-cpu {value}: {key}={text} is not a number");

    private static string Quote(string s) => "\"" + s.Replace("\\", "\\\\").Replace("\"", "\\\"") + "\"";
}

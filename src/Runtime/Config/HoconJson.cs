using System.Text;
using System.Text.Json;
using Akka.Configuration.Hocon;

namespace KvmActors.Runtime.Config;

/// <summary>
/// A resolved HOCON config as JSON (HOCON reads JSON back), for a snapshot to save the config a guest was bound
/// from. Every leaf is written as a JSON string (HOCON's own unquoted literals are strings too; the binder's
/// typed readers parse numbers, sizes and booleans from them) and a null as null.
/// </summary>
public static class HoconJson
{
    public static string Write(Akka.Configuration.Config config)
    {
        if (config.IsEmpty || config.Root is not { } root) return "{}";
        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = true }))
            WriteValue(json, root);
        return Encoding.UTF8.GetString(stream.ToArray());
    }

    private static void WriteValue(Utf8JsonWriter json, HoconValue value)
    {
        if (value.IsObject())
        {
            json.WriteStartObject();
            foreach (var (key, item) in value.GetObject().Items)
            {
                json.WritePropertyName(key);
                WriteValue(json, item);
            }
            json.WriteEndObject();
        }
        else if (value.IsArray())
        {
            json.WriteStartArray();
            foreach (var item in value.GetArray()) WriteValue(json, item);
            json.WriteEndArray();
        }
        else if (value.GetString() is { } text) json.WriteStringValue(text);
        else json.WriteNullValue();
    }
}

using System.Text.Json;
using System.Text.Json.Serialization;

namespace KvmActors.Sdk;

/// <summary>
/// A device's saved state: its type, a version the device chooses, and its data as JSON (System.Text.Json), so a
/// state file is readable and versioned. The data is serialised when the state is made (<see cref="Of{T}"/>), so
/// a state is immutable whatever the device does next: a snapshot never changes while it is being written.
/// </summary>
/// <remarks>
/// Equality is by content: the same type, version and JSON data (a state read back from a file equals the state
/// that was written).
/// </remarks>
public sealed record DeviceState(string Type, int Version, JsonElement Data)
{
    /// <summary>
    /// How device records become JSON: camelCase names, byte arrays as base64; and, reading, strictly: a member the
    /// record does not have, a constructor parameter missing, or null where the record says not null is an error,
    /// so a state of another shape is refused instead of restored half-filled.
    /// </summary>
    private static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        RespectRequiredConstructorParameters = true,
        RespectNullableAnnotations = true,
    };

    /// <summary>Serialises a record of the device's own (a positional record is fine; byte arrays become base64).</summary>
    public static DeviceState Of<T>(string type, int version, T data) =>
        new(type, version, JsonSerializer.SerializeToElement(data, Json));

    /// <summary>The data as the device's record; a shape that does not fit throws <see cref="DeviceStateException"/>.</summary>
    public T Read<T>()
    {
        try
        {
            return JsonSerializer.Deserialize<T>(Data, Json)
                   ?? throw new DeviceStateException($"{Type} state version {Version}: the data is null");
        }
        catch (Exception e) when (e is JsonException or NotSupportedException or InvalidOperationException)
        {
            throw new DeviceStateException($"{Type} state version {Version}: the data does not fit: {e.Message}");
        }
    }

    /// <summary>Throws <see cref="DeviceStateException"/> naming the versions unless <see cref="Version"/> is one of <paramref name="accepted"/>.</summary>
    public void ExpectVersion(params int[] accepted)
    {
        if (accepted.Contains(Version)) return;
        throw new DeviceStateException(
            $"{Type} state has version {Version}; this device reads version{(accepted.Length == 1 ? "" : "s")} {string.Join(", ", accepted)}");
    }

    public bool Equals(DeviceState? other) =>
        other is not null && Type == other.Type && Version == other.Version && JsonElement.DeepEquals(Data, other.Data);

    public override int GetHashCode() => HashCode.Combine(Type, Version);
}

/// <summary>A saved device state that cannot be restored: wrong type or version, a shape that does not fit, a value out of range.</summary>
public sealed class DeviceStateException(string message) : KvmActorsException(ErrorKind.Config, message);

/// <summary>Runtime to device: hand over your state; answered with <see cref="DeviceStateSaved"/> to the sender.</summary>
public sealed record SaveDeviceState
{
    public static SaveDeviceState Instance { get; } = new();
}

/// <summary>A device's answer to <see cref="SaveDeviceState"/>. <paramref name="State"/> null: the device declares no state (it is restored fresh).</summary>
public sealed record DeviceStateSaved(string Device, DeviceState? State);

/// <summary>
/// Runtime to device, sent right after the device is created and before any access: take this state; answered
/// with <see cref="DeviceStateRestored"/> to the sender.
/// </summary>
public sealed record RestoreDeviceState(DeviceState State);

/// <summary>A device's answer to <see cref="RestoreDeviceState"/>. <paramref name="Error"/>: why it could not (null: restored).</summary>
public sealed record DeviceStateRestored(string Device, string? Error);

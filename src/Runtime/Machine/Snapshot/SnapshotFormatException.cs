using System.Runtime.InteropServices;

namespace KvmActors.Runtime.Snapshot;

/// <summary>A saved state that cannot be what it claims (a struct of the wrong size, inconsistent counts): a bad state file.</summary>
public sealed class SnapshotFormatException(string message) : KvmActorsException(ErrorKind.Config, message);

/// <summary>Kernel structs to and from the raw bytes a saved state keeps, with the size checked on the way back.</summary>
internal static class StructBytes
{
    public static byte[] Of<T>(in T value) where T : unmanaged =>
        MemoryMarshal.AsBytes(new ReadOnlySpan<T>(in value)).ToArray();

    /// <summary>The struct in <paramref name="bytes"/>, which must be exactly its size; <paramref name="what"/> names it in the error.</summary>
    public static unsafe T Read<T>(byte[]? bytes, string what) where T : unmanaged
    {
        if (bytes is null) throw new SnapshotFormatException($"saved state has no {what}");
        if (bytes.Length != sizeof(T))
            throw new SnapshotFormatException($"saved {what} has {bytes.Length} bytes, expected {sizeof(T)}");
        return MemoryMarshal.Read<T>(bytes);
    }

    public static T? ReadOptional<T>(byte[]? bytes, string what) where T : unmanaged =>
        bytes is null ? null : Read<T>(bytes, what);
}

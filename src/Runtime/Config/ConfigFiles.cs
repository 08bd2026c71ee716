using System.Runtime.InteropServices;

namespace KvmActors.Runtime.Config;

/// <summary>
/// Reads the files a config names (the config itself, includes, images, region contents, modules) only after
/// checking them with stat: each must be a regular file no larger than what it is loaded into. A FIFO is never
/// opened (it would block), a device such as /dev/zero never read (it has no end), and a read that fails
/// (e.g. /proc/self/mem, which stat calls a regular file of size 0) or exceeds the bound is an error too.
/// </summary>
public static class ConfigFiles
{
    /// <summary>The bytes of <paramref name="path"/>, or a ConfigException from <paramref name="error"/> naming it.</summary>
    /// <param name="shown">The path as the config wrote it, for messages.</param>
    /// <param name="into">What the bytes are loaded into, for messages ("region 'rom'").</param>
    public static byte[] Read(string path, string shown, ulong maxBytes, string into, Func<string, ConfigException> error)
    {
        var (kind, size) = Stat(path, shown, error);
        if (kind != "regular file")
            throw error($"'{shown}' is {kind}, not a regular file ({path})");
        if ((ulong)size > maxBytes)
            throw error($"'{shown}' is {size} bytes, larger than {into} (0x{maxBytes:x} bytes)");
        try
        {
            using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read);
            // Bounded by maxBytes whatever stat said: files under /proc report size 0.
            var buffer = new byte[Math.Min(maxBytes, (ulong)Math.Max(size, 64 * 1024)) + 1];
            var total = 0;
            while (true)
            {
                if (total == buffer.Length)
                {
                    if ((ulong)total > maxBytes)
                        throw error($"'{shown}' holds more than {into} takes (0x{maxBytes:x} bytes)");
                    Array.Resize(ref buffer, (int)Math.Min((ulong)buffer.Length * 2, maxBytes + 1));
                }
                var n = RandomAccess.Read(handle, buffer.AsSpan(total), total);
                if (n == 0) break;
                total += n;
            }
            if ((ulong)total > maxBytes)
                throw error($"'{shown}' holds more than {into} takes (0x{maxBytes:x} bytes)");
            return buffer[..total];
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw error($"cannot read '{shown}' ({path}): {e.Message}");
        }
    }

    // statx has one layout on every Linux architecture (unlike struct stat): mode at byte 28, size at byte 40.
    [DllImport("libc", SetLastError = true)]
    private static extern int statx(int dirfd, string path, int flags, uint mask, byte[] buffer);

    private const int AtFdCwd = -100;
    private const uint StatxType = 0x1, StatxMode = 0x2, StatxSize = 0x200;

    private static (string Kind, long Size) Stat(string path, string shown, Func<string, ConfigException> error)
    {
        var buffer = new byte[256];
        if (statx(AtFdCwd, path, 0, StatxType | StatxMode | StatxSize, buffer) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            var where = shown == path ? "" : $" (looked in {path})";
            throw error(errno switch
            {
                2 or 20 => $"'{shown}' not found{where}",
                13 => $"'{shown}' cannot be read: permission denied{where}",
                _ => $"'{shown}' cannot be read: {Marshal.GetPInvokeErrorMessage(errno)}{where}",
            });
        }
        var mode = BitConverter.ToUInt16(buffer, 28);
        var kind = (mode & 0xf000) switch
        {
            0x8000 => "regular file",
            0x4000 => "a directory",
            0x1000 => "a FIFO",
            0x2000 => "a character device",
            0x6000 => "a block device",
            0xc000 => "a socket",
            _ => "not a file",
        };
        return (kind, BitConverter.ToInt64(buffer, 40));
    }
}

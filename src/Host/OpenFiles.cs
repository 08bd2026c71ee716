using System.Runtime.InteropServices;

namespace KvmActors.Host;

/// <summary>
/// The open-files limit (RLIMIT_NOFILE). The runtime keeps each loaded assembly open, so kvmactors needs about
/// a hundred fds before the first vCPU; below <see cref="Minimum"/> it says so at once instead of failing to load
/// an assembly half-way. Uses nothing but the base library: it runs before anything else is loaded.
/// </summary>
public static partial class OpenFiles
{
    public const ulong Minimum = 128;

    /// <summary>The soft limit, or null if it cannot be read.</summary>
    public static unsafe ulong? Limit()
    {
        RLimit l;
        return getrlimit(RlimitNofile, &l) == 0 ? l.Current : null;
    }

    /// <summary>
    /// Ends the process with exit 1 and one line naming the limit when it is too low to start. Written to fd 2
    /// with write(2): near the limit even Console's initialisation, or loading one more assembly, would fail.
    /// </summary>
    public static unsafe void ExitIfTooLowToStart()
    {
        if (Limit() is not { } limit || limit >= Minimum) return;
        var line = System.Text.Encoding.UTF8.GetBytes(
            $"kvmactors: host error: the open-files limit (RLIMIT_NOFILE) is {limit}; kvmactors needs at least {Minimum}: raise it with ulimit -n\n");
        fixed (byte* p = line) _ = write(2, p, (nuint)line.Length);
        Environment.Exit(1);
    }

    private const int RlimitNofile = 7;

    // Plain DllImport of blittable pointers: no marshalling code, so no interop assembly to load.
    [StructLayout(LayoutKind.Sequential)]
    private struct RLimit { public ulong Current, Maximum; }

    [DllImport("libc")]
    private static extern unsafe int getrlimit(int resource, RLimit* limit);

    [DllImport("libc")]
    private static extern unsafe nint write(int fd, byte* buffer, nuint count);
}

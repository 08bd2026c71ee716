using System.Runtime.InteropServices;

namespace KvmActors.Tests.Support;

/// <summary>Named pipes for tests of inputs that must never be opened (opening one blocks until a writer comes).</summary>
public static class Fifo
{
    [DllImport("libc", SetLastError = true)]
    private static extern int mkfifo(string path, uint mode);

    public static void Make(string path)
    {
        if (mkfifo(path, 0x1b6) != 0) throw new IOException($"mkfifo {path}: errno {Marshal.GetLastPInvokeError()}");
    }
}

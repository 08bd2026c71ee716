using System.Runtime.InteropServices;

namespace KvmActors.Runtime.Kvm;

/// <summary>An owned Linux file descriptor (the /dev/kvm, VM and vCPU fds), closed exactly once.</summary>
public sealed class SafeFd : SafeHandle
{
    private static long _live;

    /// <summary>How many fds opened here are still open (for leak checks).</summary>
    public static long Live => Interlocked.Read(ref _live);

    public SafeFd(int fd) : base(new nint(-1), ownsHandle: true)
    {
        SetHandle(fd);
        Interlocked.Increment(ref _live);
    }

    public override bool IsInvalid => handle == -1;
    public int Fd => (int)handle;

    protected override bool ReleaseHandle()
    {
        Interlocked.Decrement(ref _live);
        return Native.Close((int)handle) == 0;
    }
}

/// <summary>An owned mmap'd range (guest RAM or a vCPU's kvm_run area), unmapped exactly once.</summary>
public sealed class SafeMapping : SafeHandle
{
    private static long _live;

    /// <summary>How many mappings made here are still mapped (for leak checks).</summary>
    public static long Live => Interlocked.Read(ref _live);

    public nuint Length { get; }

    private SafeMapping(nint address, nuint length) : base(Native.MapFailed, ownsHandle: true)
    {
        SetHandle(address);
        Length = length;
        Interlocked.Increment(ref _live);
    }

    public override bool IsInvalid => handle == Native.MapFailed || handle == 0;
    public nint Address => handle;

    public static SafeMapping Anonymous(ulong length, string what)
    {
        var p = Native.Mmap(0, (nuint)length, Native.PROT_READ | Native.PROT_WRITE,
            Native.MAP_PRIVATE | Native.MAP_ANONYMOUS | Native.MAP_NORESERVE, -1, 0);
        if (p == Native.MapFailed) throw KvmException.FromLastError("mmap", what);
        return new SafeMapping(p, (nuint)length);
    }

    public static SafeMapping Shared(SafeFd fd, ulong length, string what)
    {
        var p = Native.Mmap(0, (nuint)length, Native.PROT_READ | Native.PROT_WRITE, Native.MAP_SHARED, fd.Fd, 0);
        if (p == Native.MapFailed) throw KvmException.FromLastError("mmap", what);
        return new SafeMapping(p, (nuint)length);
    }

    protected override bool ReleaseHandle()
    {
        Interlocked.Decrement(ref _live);
        return Native.Munmap(handle, Length) == 0;
    }
}

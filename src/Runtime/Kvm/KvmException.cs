using System.Runtime.InteropServices;

namespace KvmActors.Runtime.Kvm;

/// <summary>A failing KVM call: names the ioctl (or syscall) and the errno.</summary>
public sealed class KvmException : KvmActorsException
{
    public string Operation { get; }
    public int Errno { get; }

    public KvmException(string operation, int errno, string? context = null)
        : base(ErrorKind.Kvm, $"{operation} failed: {ErrnoName(errno)} ({Marshal.GetPInvokeErrorMessage(errno)}){(context is null ? "" : ": " + context)}")
    {
        Operation = operation;
        Errno = errno;
    }

    public KvmException(string message) : base(ErrorKind.Kvm, message) { Operation = "kvm"; }

    public static KvmException FromLastError(string operation, string? context = null)
        => new(operation, Marshal.GetLastPInvokeError(), context);

    public static string ErrnoName(int errno) => errno switch
    {
        1 => "EPERM", 2 => "ENOENT", 4 => "EINTR", 5 => "EIO", 9 => "EBADF", 11 => "EAGAIN",
        12 => "ENOMEM", 13 => "EACCES", 14 => "EFAULT", 16 => "EBUSY", 17 => "EEXIST", 19 => "ENODEV",
        22 => "EINVAL", 24 => "EMFILE", 25 => "ENOTTY", 28 => "ENOSPC", 38 => "ENOSYS", 95 => "EOPNOTSUPP",
        _ => $"errno {errno}",
    };
}

public static class Errno
{
    public const int EINTR = 4;
    public const int EAGAIN = 11;
}

namespace KvmActors.Runtime.Kvm;

/// <summary>The open /dev/kvm: API-version check, capability queries, VM creation.</summary>
public sealed class KvmSystem : IDisposable
{
    public const int ExpectedApiVersion = 12;
    public const string DefaultPath = "/dev/kvm";

    private readonly SafeFd _fd;
    public int VcpuMmapSize { get; }

    private KvmSystem(SafeFd fd)
    {
        _fd = fd;
        var version = KvmCalls.Ioctl(_fd, KvmIoctls.GetApiVersion, 0);
        if (version != ExpectedApiVersion)
            throw new KvmException($"KVM_GET_API_VERSION returned {version}, expected {ExpectedApiVersion}");
        VcpuMmapSize = KvmCalls.Ioctl(_fd, KvmIoctls.GetVcpuMmapSize, 0);
    }

    public static KvmSystem Open(string path = DefaultPath)
    {
        var fd = Native.Open(path, Native.O_RDWR | Native.O_CLOEXEC);
        if (fd < 0) throw KvmException.FromLastError($"open {path}");
        return new KvmSystem(new SafeFd(fd));
    }

    /// <summary>Whether /dev/kvm can be opened here, and if not why (for test skips outside CI).</summary>
    public static string? Unavailable(string path = DefaultPath)
    {
        try { using var k = Open(path); return null; }
        catch (Exception e) { return e.Message; }
    }

    public int CheckExtension(KvmCap cap) => KvmCalls.Ioctl(_fd, KvmIoctls.CheckExtension, (nint)cap);

    public KvmVm CreateVm()
    {
        var vmFd = KvmCalls.Ioctl(_fd, KvmIoctls.CreateVm, 0);
        return new KvmVm(this, new SafeFd(vmFd));
    }

    /// <summary>KVM_GET_SUPPORTED_CPUID: the CPUID leaves this KVM can expose.</summary>
    public unsafe KvmCpuidEntry2[] GetSupportedCpuid()
    {
        for (var n = 64; n <= 4096; n *= 2)
        {
            var bytes = new byte[8 + n * sizeof(KvmCpuidEntry2)];
            fixed (byte* p = bytes)
            {
                *(uint*)p = (uint)n;
                var r = Native.Ioctl(_fd.Fd, KvmIoctls.GetSupportedCpuid, p);
                if (r < 0)
                {
                    var errno = System.Runtime.InteropServices.Marshal.GetLastPInvokeError();
                    if (errno == 7 /* E2BIG */) continue;
                    throw new KvmException("KVM_GET_SUPPORTED_CPUID", errno);
                }
                var count = *(uint*)p;
                var result = new KvmCpuidEntry2[count];
                var entries = (KvmCpuidEntry2*)(p + 8);
                for (var i = 0; i < count; i++) result[i] = entries[i];
                return result;
            }
        }
        throw new KvmException("KVM_GET_SUPPORTED_CPUID", 7);
    }

    public void Dispose() => _fd.Dispose();
}

/// <summary>ioctl wrappers that turn -1 into a <see cref="KvmException"/> naming the call.</summary>
internal static unsafe class KvmCalls
{
    public static int Ioctl(SafeFd fd, uint request, nint arg, string? context = null)
    {
        var added = false;
        try
        {
            fd.DangerousAddRef(ref added);
            var r = Native.Ioctl(fd.Fd, request, arg);
            if (r < 0) throw KvmException.FromLastError(KvmIoctls.Name(request), context);
            return r;
        }
        finally { if (added) fd.DangerousRelease(); }
    }

    public static int Ioctl(SafeFd fd, uint request, void* arg, string? context = null)
    {
        var added = false;
        try
        {
            fd.DangerousAddRef(ref added);
            var r = Native.Ioctl(fd.Fd, request, arg);
            if (r < 0) throw KvmException.FromLastError(KvmIoctls.Name(request), context);
            return r;
        }
        finally { if (added) fd.DangerousRelease(); }
    }
}

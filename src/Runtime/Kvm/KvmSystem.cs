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
        return new KvmSystem(new SafeFd(fd)) { _path = path };
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

    // Fixed per KVM module and host CPU, so asked once per process: every VM's set-up needs it, and asking costs two
    // ioctls (the first answers E2BIG with the count), ~0.3 ms of a create under load (bench density). Per device path.
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, KvmCpuidEntry2[]> SupportedCpuid = new();
    private string _path = DefaultPath;

    /// <summary>KVM_GET_SUPPORTED_CPUID: the CPUID leaves this KVM can expose (a copy the caller may change).</summary>
    public KvmCpuidEntry2[] GetSupportedCpuid() =>
        (KvmCpuidEntry2[])SupportedCpuid.GetOrAdd(_path, _ => KvmCalls.ReadCpuid(_fd, KvmIoctls.GetSupportedCpuid)).Clone();

    private uint[]? _msrIndexList;

    /// <summary>
    /// KVM_GET_MSR_INDEX_LIST: the MSRs this KVM saves and restores for a guest (fixed per KVM and host CPU, so read once).
    /// Some may still be refused by KVM_GET_MSRS/KVM_SET_MSRS on a particular vCPU.
    /// </summary>
    public unsafe IReadOnlyList<uint> MsrIndexList
    {
        get
        {
            if (_msrIndexList is { } cached) return cached;
            // The kernel answers E2BIG with the real count in nmsrs when the array is too small.
            uint n = 0;
            while (true)
            {
                var bytes = new byte[4 + n * 4];
                fixed (byte* p = bytes)
                {
                    *(uint*)p = n;
                    if (KvmCalls.TryIoctl(_fd, KvmIoctls.GetMsrIndexList, p, out var errno))
                        return _msrIndexList = new ReadOnlySpan<uint>(p + 4, (int)*(uint*)p).ToArray();
                    if (errno != E2Big || *(uint*)p <= n) throw new KvmException("KVM_GET_MSR_INDEX_LIST", errno);
                    n = *(uint*)p;
                }
            }
        }
    }

    private const int E2Big = 7;

    public void Dispose() => _fd.Dispose();
}

/// <summary>ioctl wrappers that turn -1 into a <see cref="KvmException"/> naming the call.</summary>
internal static unsafe class KvmCalls
{
    /// <summary>One ioctl that may fail in an expected way: false and the errno instead of an exception.</summary>
    public static bool TryIoctl(SafeFd fd, uint request, void* arg, out int errno)
    {
        var added = false;
        try
        {
            fd.DangerousAddRef(ref added);
            if (Native.Ioctl(fd.Fd, request, arg) >= 0) { errno = 0; return true; }
            errno = System.Runtime.InteropServices.Marshal.GetLastPInvokeError();
            return false;
        }
        finally { if (added) fd.DangerousRelease(); }
    }

    /// <summary>
    /// A struct kvm_cpuid2 answer (KVM_GET_SUPPORTED_CPUID, KVM_GET_CPUID2): grows the entry array while KVM says E2BIG.
    /// </summary>
    public static KvmCpuidEntry2[] ReadCpuid(SafeFd fd, uint request, string? context = null)
    {
        for (var n = 64; n <= 4096; n *= 2)
        {
            var bytes = new byte[8 + n * sizeof(KvmCpuidEntry2)];
            fixed (byte* p = bytes)
            {
                *(uint*)p = (uint)n;
                if (TryIoctl(fd, request, p, out var errno))
                    return new ReadOnlySpan<KvmCpuidEntry2>(p + 8, (int)*(uint*)p).ToArray();
                if (errno != 7 /* E2BIG */) throw new KvmException(KvmIoctls.Name(request), errno, context);
            }
        }
        throw new KvmException(KvmIoctls.Name(request), 7, context);
    }

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

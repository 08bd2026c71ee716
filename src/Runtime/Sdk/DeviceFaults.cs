namespace KvmActors.Sdk;

/// <summary>Faults injected into one device actor (<c>guest.faults.devices.NAME</c>). Accesses are counted across restarts.</summary>
public sealed record DeviceFaults(long ThrowOnAccess, bool Repeat, TimeSpan ReplyDelay)
{
    public bool Fires(long access) => ThrowOnAccess > 0 && (access == ThrowOnAccess || (Repeat && access % ThrowOnAccess == 0));
}

/// <summary>The exception every injected fault throws, so logs and reports say it was on purpose.</summary>
public sealed class InjectedFaultException(string message) : Exception(message);

namespace KvmActors;

/// <summary>Whose problem an error is: decides how it is reported and, in the CLI, the exit status.</summary>
public enum ErrorKind
{
    /// <summary>A command line the program cannot use (CLI exit status 2).</summary>
    Usage,
    /// <summary>A guest file, runtime setting or device option that is wrong: names the key and the file (exit 2).</summary>
    Config,
    /// <summary>The guest did something that cannot continue (exit 1).</summary>
    Guest,
    /// <summary>A call into KVM failed (exit 1).</summary>
    Kvm,
    /// <summary>The host could not do its part: files, fds, threads, memory (exit 1).</summary>
    Host,
}

/// <summary>The base of every error KvmActors raises on purpose; <see cref="Kind"/> says whose problem it is.</summary>
public abstract class KvmActorsException(ErrorKind kind, string message, Exception? inner = null) : Exception(message, inner)
{
    public ErrorKind Kind { get; } = kind;
}

/// <summary>A host-side failure with a message fit for one line on stderr (e.g. the fd limit reached).</summary>
public sealed class HostException(string message, Exception? inner = null) : KvmActorsException(ErrorKind.Host, message, inner);

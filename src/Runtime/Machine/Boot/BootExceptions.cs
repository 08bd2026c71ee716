namespace KvmActors.Runtime.Boot;

/// <summary>A kernel or boot image that cannot be loaded: bad magic or checksum, truncated headers,
/// segments outside RAM, overlapping segments, unsupported requirements.</summary>
public sealed class BootImageException(string message) : KvmActorsException(ErrorKind.Config, message);

/// <summary>The VM's memory cannot hold the boot structures a CPU mode needs (GDT, page tables, boot stack).</summary>
public sealed class BootSetupException(string message) : KvmActorsException(ErrorKind.Config, message);

using System.Collections.Concurrent;
using System.Text;
using Akka.Actor;

namespace KvmActors.Runtime.Devices;

/// <summary>Where a device's guest output goes (a UART's transmitter, a debug console).</summary>
public interface IGuestOutput
{
    void Write(ReadOnlySpan<byte> bytes);
    void Flush();
}

/// <summary>Guest output kept in memory, for tests: read it with <see cref="Text"/> once the VM has ended.</summary>
public sealed class MemoryOutput : IGuestOutput
{
    private readonly object _gate = new();
    private readonly MemoryStream _bytes = new();

    public void Write(ReadOnlySpan<byte> bytes) { lock (_gate) _bytes.Write(bytes); }
    public void Flush() { }
    public byte[] Bytes { get { lock (_gate) return _bytes.ToArray(); } }
    public string Text => Encoding.Latin1.GetString(Bytes);
}

/// <summary>
/// The host end of the devices, one per actor system: named output sinks that device options refer to
/// (<c>sink = stdout</c>, <c>stderr</c>, <c>null</c>, <c>"file:out.txt"</c>, <c>"memory:com1"</c>).
/// A memory sink is created on first use and kept for the system's life so a test can read it.
/// </summary>
public sealed partial class HostIo : IExtension
{
    private readonly ConcurrentDictionary<string, MemoryOutput> _memory = new();
    private static readonly object StdoutGate = new();

    public static HostIo For(ActorSystem system) => system.WithExtension<HostIo, HostIoProvider>();

    /// <summary>Sinks and inputs a host program attached by name (<c>"attached:NAME"</c>).</summary>
    public AttachedIo Attached { get; } = new();

    /// <summary>The in-memory sink of this name (created if new).</summary>
    public MemoryOutput Memory(string name) => _memory.GetOrAdd(name, _ => new MemoryOutput());

    /// <summary>Opens the sink a device option names. Relative file paths resolve against <paramref name="baseDirectory"/>.</summary>
    public IGuestOutput OpenOutput(string spec, string baseDirectory)
    {
        if (spec == "stdout") return new StreamOutput(Console.OpenStandardOutput(), StdoutGate, ownsStream: false);
        if (spec == "stderr") return new StreamOutput(Console.OpenStandardError(), StdoutGate, ownsStream: false);
        if (spec is "null" or "none") return NullOutput.Instance;
        if (spec.StartsWith("memory:")) return Memory(spec["memory:".Length..]);
        if (spec.StartsWith(AttachedIo.Prefix)) return Attached.Output(spec[AttachedIo.Prefix.Length..]);
        if (spec.StartsWith("file:"))
        {
            var path = Path.Combine(baseDirectory, spec["file:".Length..]);
            // bufferSize 0: no FileStream buffer, so each guest write is a write(2) of its own.
            return new StreamOutput(new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.Read, bufferSize: 0), new object(), ownsStream: true);
        }
        throw new ArgumentException($"unknown sink '{spec}' (use stdout, stderr, null, file:PATH or memory:NAME)");
    }

    private sealed class NullOutput : IGuestOutput
    {
        public static readonly NullOutput Instance = new();
        public void Write(ReadOnlySpan<byte> bytes) { }
        public void Flush() { }
    }

    /// <summary>
    /// Write-through: every write is flushed to the operating system before it returns, so the bytes are
    /// in the file (or pipe) even if the host process is killed right after.
    /// </summary>
    private sealed class StreamOutput(Stream stream, object gate, bool ownsStream) : IGuestOutput, IDisposable
    {
        public void Write(ReadOnlySpan<byte> bytes)
        {
            lock (gate)
            {
                stream.Write(bytes);
                stream.Flush();
            }
        }
        public void Flush() { lock (gate) stream.Flush(); }
        public void Dispose() { if (ownsStream) stream.Dispose(); }
    }
}

public sealed class HostIoProvider : ExtensionIdProvider<HostIo>
{
    public override HostIo CreateExtension(ExtendedActorSystem system) => new();
}

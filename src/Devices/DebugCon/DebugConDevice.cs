using Akka.Event;
using KvmActors.Sdk;

namespace KvmActors.Devices.DebugCon;

/// <summary>The options of a <c>debugcon</c> device.</summary>
/// <param name="Sink">Where guest bytes go: <c>stdout</c> (default), <c>stderr</c>, <c>null</c> (quoted or not), <c>file:PATH</c> (relative to the config file's folder) or <c>memory:NAME</c>.</param>
/// <param name="Readback">The byte a read returns (default 0xe9, QEMU's default, which lets a guest detect the port).</param>
public sealed record DebugConSettings(string Sink, byte Readback)
{
    public const string DefaultSink = "stdout";
    public const byte DefaultReadback = 0xe9;

    public static DebugConSettings Parse(DeviceOptions options)
    {
        options.RejectUnknown("sink", "readback");
        // An unquoted `sink = null` is a HOCON null: GetString takes it to mean what it says, the null sink.
        var sink = options.GetString("sink", DefaultSink);
        if (sink.Length == 0) throw options.Error("sink", "empty (use stdout, stderr, null, file:PATH or memory:NAME)");
        var readback = (byte)options.GetInteger("readback", DefaultReadback, 0, 0xff);
        return new DebugConSettings(sink, readback);
    }
}

/// <summary>
/// <c>debugcon</c>: compatible with QEMU's <c>isa-debugcon</c> (usually at port 0xe9, set by the port range
/// in config). Bytes the guest writes go to a host sink; reads return a fixed byte.
/// </summary>
/// <remarks>
/// <para>Options: <c>sink</c> (default <c>stdout</c>; see <see cref="DebugConSettings"/>), <c>readback</c>
/// (default 0xe9). Unknown keys are rejected.</para>
/// <para>Writes: a write of N bytes (OUTW, OUTL) emits its N bytes, low byte first, as QEMU does by
/// splitting a wide access into byte accesses. The bytes go to the sink's bounded buffer and its writer
/// thread writes them at once, so output is visible as the guest produces it.</para>
/// <para>Back-pressure: the isa-debugcon port has no flow control a guest could wait on (no status
/// register), so when the sink's buffer is full (a stdout nobody reads) bytes are dropped, never waited
/// for: a warning says so when dropping starts, and another gives the count when the sink has room again
/// (or the device stops).</para>
/// <para>Reads: every byte of the access width is <c>readback</c> (a 2-byte read gives 0xe9e9 by default),
/// again as a split byte access would.</para>
/// <para>Snapshot: none (state-less: a restored VM gets it fresh). It keeps nothing a guest can observe: reads
/// give the configured <c>readback</c>, and the count of dropped bytes is the host's diagnostic, not the guest's.</para>
/// <para>The sink is opened when the device is created (a bad sink fails the device with a
/// <see cref="ConfigException"/> naming <c>sink</c>) and closed when it stops.</para>
/// </remarks>
[DeviceType("debugcon")]
public sealed class DebugConDevice : DeviceActor
{
    private readonly DebugConSettings _settings;
    private readonly IGuestOutput _output;
    private long _dropped;      // bytes dropped since the sink was last seen with room

    /// <summary>The sink has room again (from its writer thread).</summary>
    private sealed class SinkWritable
    {
        public static readonly SinkWritable Instance = new();
    }

    public DebugConDevice(DeviceContext context) : base(context)
    {
        _settings = DebugConSettings.Parse(context.Options);
        _output = OpenSink(HostIo, _settings.Sink, context.Options);
    }

    /// <summary>Opens the sink an option names, turning a bad spec or an unopenable file into a config error.</summary>
    internal static IGuestOutput OpenSink(HostIo hostIo, string spec, DeviceOptions options)
    {
        try
        {
            return hostIo.OpenOutput(spec, options.BaseDirectory);
        }
        catch (ArgumentException e)
        {
            throw options.Error("sink", e.Message);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException)
        {
            throw options.Error("sink", $"cannot open '{spec}': {e.Message}");
        }
    }

    protected override void OnWrite(DeviceAccess access, ulong value)
    {
        Span<byte> bytes = stackalloc byte[8];
        var n = Math.Clamp(access.Size, 1, 8);
        for (var i = 0; i < n; i++) bytes[i] = (byte)(value >> (8 * i));
        var taken = _output.TryWrite(bytes[..n]);
        if (taken == n) return;
        if (_dropped == 0)
        {
            Log.Warning("{0}: sink '{1}' is full: dropping guest output until it has room", Device.Name, _settings.Sink);
            _output.NotifyWhenWritable(Self, SinkWritable.Instance);
        }
        _dropped += n - taken;
    }

    protected override void OnMessage(object message)
    {
        if (message is not SinkWritable) { Unhandled(message); return; }
        ReportDropped();
    }

    private void ReportDropped()
    {
        if (_dropped == 0) return;
        Log.Warning("{0}: dropped {1} bytes of guest output while sink '{2}' was full", Device.Name, _dropped, _settings.Sink);
        _dropped = 0;
    }

    protected override ulong OnRead(DeviceAccess access)
    {
        ulong v = 0;
        for (var i = 0; i < Math.Clamp(access.Size, 1, 8); i++) v |= (ulong)_settings.Readback << (8 * i);
        return v;
    }

    protected override void PostStop()
    {
        ReportDropped();
        try
        {
            (_output as IDisposable)?.Dispose();
        }
        catch (Exception e)
        {
            Log.Warning("{0}: closing sink '{1}' failed: {2}", Device.Name, _settings.Sink, e.Message);
        }
        base.PostStop();
    }
}

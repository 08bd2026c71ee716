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
/// splitting a wide access into byte accesses. The sink is flushed after each write so output is
/// visible as the guest produces it and nothing is lost if the host stops.</para>
/// <para>Reads: every byte of the access width is <c>readback</c> (a 2-byte read gives 0xe9e9 by default),
/// again as a split byte access would.</para>
/// <para>The sink is opened when the device is created (a bad sink fails the device with a
/// <see cref="KvmActors.Runtime.Config.ConfigException"/> naming <c>sink</c>) and flushed and closed
/// when it stops.</para>
/// </remarks>
[DeviceType("debugcon")]
public sealed class DebugConDevice : DeviceActor
{
    private readonly DebugConSettings _settings;
    private readonly IGuestOutput _output;

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
        _output.Write(bytes[..n]);
        _output.Flush();
    }

    protected override ulong OnRead(DeviceAccess access)
    {
        ulong v = 0;
        for (var i = 0; i < Math.Clamp(access.Size, 1, 8); i++) v |= (ulong)_settings.Readback << (8 * i);
        return v;
    }

    protected override void PostStop()
    {
        try
        {
            _output.Flush();
            (_output as IDisposable)?.Dispose();
        }
        catch (Exception e)
        {
            Log.Warning("{0}: closing sink '{1}' failed: {2}", Device.Name, _settings.Sink, e.Message);
        }
        base.PostStop();
    }
}

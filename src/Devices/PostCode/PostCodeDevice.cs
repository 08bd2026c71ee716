using Akka.Actor;
using Akka.Event;
using KvmActors.Sdk;

namespace KvmActors.Devices.PostCode;

/// <summary>
/// <c>post-code</c>: a POST diagnostic port (usually 0x80, set by the port range in config). Every byte the
/// guest writes is recorded and logged at debug level; <see cref="GetPostCodes"/> returns the record.
/// </summary>
/// <remarks>
/// <para>Options: <c>max-codes</c> (default 65536, at least 1): how many codes are kept. Past that the oldest
/// are discarded (counted in <see cref="PostCodes.Dropped"/>), so the most recent codes, the ones that show
/// where a guest stopped, are always there. The limit matters because port 0x80 is also the classic
/// "I/O delay" port: Linux and others write to it just to wait, possibly millions of times.</para>
/// <para>Writes: a POST card latches data lines 0-7 only, so a 2- or 4-byte write records its low byte.</para>
/// <para>Reads: the last code written, zero-extended to the access width (0x00 before any write), like the
/// DMA page register that port 0x80 is on a PC.</para>
/// <para>Snapshot: the last code and the log (<see cref="PostCodeLogState"/>, version 1).</para>
/// </remarks>
[DeviceType("post-code")]
public sealed class PostCodeDevice : DeviceActor
{
    public const int DefaultMaxCodes = 65536;

    private readonly PostCodeLog _log;

    public PostCodeDevice(DeviceContext context) : base(context) => _log = new PostCodeLog(ParseMaxCodes(context.Options));

    /// <summary>Checks a <c>post-code</c> options block and returns <c>max-codes</c>.</summary>
    public static int ParseMaxCodes(DeviceOptions options)
    {
        options.RejectUnknown("max-codes");
        return (int)options.GetInteger("max-codes", DefaultMaxCodes, 1, int.MaxValue);
    }

    protected override void OnWrite(DeviceAccess access, ulong value)
    {
        var code = (byte)value;
        _log.Record(code);
        Log.Debug("{0}: POST code 0x{1:x2}", Device.Name, code);
    }

    protected override ulong OnRead(DeviceAccess access) => _log.Last;

    protected override void OnMessage(object message)
    {
        if (message is GetPostCodes) Sender.Tell(_log.Snapshot());
        else Unhandled(message);
    }

    public const int StateVersion = 1;

    protected override DeviceState SaveState() => DeviceState.Of(Device.Type, StateVersion, _log.Save());

    protected override void RestoreState(DeviceState state)
    {
        state.ExpectVersion(StateVersion);
        _log.Restore(state.Read<PostCodeLogState>());
    }
}

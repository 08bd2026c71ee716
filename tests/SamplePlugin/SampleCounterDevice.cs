using Akka.Event;
using KvmActors.Sdk;

namespace KvmActors.SamplePlugin;

/// <summary>The options of a <c>sample-counter</c>, checked before the device starts.</summary>
/// <param name="Initial">The counter's value at start and after a reset (<c>initial</c>, 0..0xffffffff, default 0).</param>
/// <param name="Step">Added to the counter after every read of COUNT (<c>step</c>, 0..0xffff, default 0).</param>
public sealed record SampleCounterSettings(uint Initial, uint Step)
{
    public static SampleCounterSettings Parse(DeviceOptions options)
    {
        options.RejectUnknown("initial", "step");
        var initial = options.GetInteger("initial", 0, 0, uint.MaxValue);
        var step = options.GetInteger("step", 0, 0, 0xffff);
        return new SampleCounterSettings((uint)initial, (uint)step);
    }
}

/// <summary>
/// <c>sample-counter</c>: a sample plug-in device, a 32-bit counter the guest reads and adds to. It works
/// the same on ports and MMIO; each range it is given holds two registers, at offsets 0 and 4:
/// <list type="table">
/// <item><term>0 COUNT</term><description>read: the counter, then the counter grows by <c>step</c>;
/// write: adds the value written (wrapping at 32 bits).</description></item>
/// <item><term>4 WRITES</term><description>read: how many writes COUNT has taken; write (any value):
/// the counter goes back to <c>initial</c> and WRITES to 0.</description></item>
/// </list>
/// A read narrower than 4 bytes gives the register's low bytes; an access at any other offset reads all
/// ones and is otherwise ignored.
/// <para>Snapshot: COUNT and WRITES (<see cref="SampleCounterState"/>, version 1); <c>initial</c> and <c>step</c>
/// are options, so they come from the config of the restored VM.</para>
/// </summary>
/// <summary>A <c>sample-counter</c>'s state: the counter and how many writes COUNT has taken.</summary>
public sealed record SampleCounterState(uint Counter, uint Writes);

[DeviceType("sample-counter")]
public sealed class SampleCounterDevice : DeviceActor
{
    public const ulong Count = 0, Writes = 4;
    /// <summary>The two registers need 8 bytes of every range.</summary>
    public const ulong RangeSize = 8;

    private readonly SampleCounterSettings _settings;
    private uint _counter;
    private uint _writes;

    public SampleCounterDevice(DeviceContext context) : base(context)
    {
        _settings = SampleCounterSettings.Parse(context.Options);
        CheckRanges(context);
        _counter = _settings.Initial;
    }

    /// <summary>Every port or MMIO range must hold both registers.</summary>
    public static void CheckRanges(DeviceContext context)
    {
        var options = context.Options;
        foreach (var r in context.Ports)
            if ((ulong)(r.Last - r.First) + 1 < RangeSize)
                throw new ConfigException(options.File, $"guest.devices.{context.Name}.ports", $"{r} is too small: sample-counter needs {RangeSize} ports");
        foreach (var r in context.Mmio)
            if (r.Last - r.First + 1 < RangeSize)
                throw new ConfigException(options.File, $"guest.devices.{context.Name}.mmio", $"{r} is too small: sample-counter needs {RangeSize} bytes");
    }

    protected override ulong OnRead(DeviceAccess access)
    {
        switch (access.Offset)
        {
            case Count:
                var value = _counter;
                _counter += _settings.Step;
                return value;
            case Writes:
                return _writes;
            default:
                return access.AllOnes;
        }
    }

    protected override void OnWrite(DeviceAccess access, ulong value)
    {
        switch (access.Offset)
        {
            case Count:
                _counter += (uint)(value & access.AllOnes);
                _writes++;
                break;
            case Writes:
                _counter = _settings.Initial;
                _writes = 0;
                Log.Debug("{0}: reset to 0x{1:x}", Device.Name, _counter);
                break;
        }
    }

    public const int StateVersion = 1;

    protected override DeviceState SaveState() => DeviceState.Of(Device.Type, StateVersion, new SampleCounterState(_counter, _writes));

    protected override void RestoreState(DeviceState state)
    {
        state.ExpectVersion(StateVersion);
        var saved = state.Read<SampleCounterState>();
        _counter = saved.Counter;
        _writes = saved.Writes;
    }
}

/// <summary>
/// <c>sample-pci</c>: the smallest PCI plug-in. It declares itself (vendor 0x1234, device 0x0001, one 16-port I/O BAR)
/// and the host bridge gives it a slot; offset 0 of the BAR is a register the guest writes and reads back, every
/// other offset reads as <c>(bar &lt;&lt; 16) | offset</c>, so a test sees which BAR and offset an access reached.
/// </summary>
[DeviceType("sample-pci")]
public sealed class SamplePciDevice(DeviceContext context) : PciDeviceActor(context), IPciDevice
{
    private uint _register;

    public static PciDeclaration DeclarePci(DeviceOptions options)
    {
        options.RejectUnknown();
        return new PciDeclaration(0x1234, 0x0001, 0x00ff00, [new PciBar(0, 16, PciBarKind.Io)]);
    }

    protected override ulong OnBarRead(int bar, ulong offset, int size, DeviceAccess access) =>
        offset == 0 ? _register : ((ulong)bar << 16) | offset;

    protected override void OnBarWrite(int bar, ulong offset, int size, ulong value, DeviceAccess access)
    {
        if (offset == 0) _register = (uint)value;
    }
}

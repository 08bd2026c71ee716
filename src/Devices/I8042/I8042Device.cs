using Akka.Event;
using KvmActors.Sdk;

namespace KvmActors.Devices.I8042;

/// <summary>
/// <c>i8042</c>: a stub PC keyboard controller at ports 0x60 (data) and 0x64 (status/command), with no
/// keyboard or mouse behind it and no IRQs. Its reason to exist: guests reset the machine by writing
/// 0xFE to port 0x64, which ends the VM with <see cref="VmEndReason.ResetRequested"/>. Register
/// behaviour is documented on <see cref="I8042Controller"/>.
/// </summary>
/// <remarks>
/// <para>Options: none (any key is rejected).</para>
/// <para>Ports: configure either one range 0x60-0x64 or two ranges 0x60 and 0x64. The register is decoded
/// from the port's distance to the lowest port of the device's ranges (0 = data, 4 = status/command), so
/// both layouts work. With one range the device also receives 0x61-0x63: those read all ones and drop
/// writes; in particular 0x61 (port B: PIT channel 2 gate, speaker) is not emulated here. Two ranges
/// leave 0x61 free for a device that does.</para>
/// <para>Registers are 8 bits: a wider write uses its low byte; a wider read returns the byte zero-extended.</para>
/// <para>Snapshot: the whole controller (<see cref="I8042State"/>, version 1). Whether a reset was already sent is
/// not state: a reset ends the VM.</para>
/// <para>Reset: the first reset pulse ends the VM; later ones (the VM is already ending) are logged at debug level.</para>
/// </remarks>
[DeviceType("i8042")]
public sealed class I8042Device : DeviceActor
{
    public const ulong DataRegister = 0;
    public const ulong CommandRegister = 4;

    private readonly I8042Controller _controller = new();
    private bool _resetSent;

    public I8042Device(DeviceContext context) : base(context) => ValidateOptions(context.Options);

    /// <summary>Checks an <c>i8042</c> options block: it takes no options.</summary>
    public static void ValidateOptions(DeviceOptions options) => options.RejectUnknown();

    private ulong Register(DeviceAccess access)
    {
        var ports = Device.Ports;
        var base_ = ports.Count > 0 ? ports.Min(r => r.First) : access.Address - access.Offset;
        return access.Address - base_;
    }

    protected override ulong OnRead(DeviceAccess access) => Register(access) switch
    {
        DataRegister => _controller.ReadData(),
        CommandRegister => _controller.ReadStatus(),
        _ => access.AllOnes,
    };

    protected override void OnWrite(DeviceAccess access, ulong value)
    {
        var b = (byte)value;
        var effect = Register(access) switch
        {
            DataRegister => _controller.WriteData(b),
            CommandRegister => _controller.WriteCommand(b),
            _ => I8042Effect.None,
        };
        if (effect != I8042Effect.ResetPulsed) return;

        var detail = Register(access) == CommandRegister
            ? $"guest pulsed the reset line through the keyboard controller (command 0x{b:x2} to port 0x{access.Address:x})"
            : $"guest cleared the reset bit of the keyboard controller's output port (0x{b:x2} after command 0xd1)";
        if (_resetSent)
        {
            Log.Debug("{0}: {1}; the VM is already ending", Device.Name, detail);
            return;
        }
        _resetSent = true;
        EndVm(VmEndReason.ResetRequested, detail);
    }

    public const int StateVersion = 1;

    protected override DeviceState SaveState() => DeviceState.Of(Device.Type, StateVersion, _controller.Save());

    protected override void RestoreState(DeviceState state)
    {
        state.ExpectVersion(StateVersion);
        _controller.Restore(state.Read<I8042State>());
    }
}

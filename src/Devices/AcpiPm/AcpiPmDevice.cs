using System.Diagnostics;
using KvmActors.Sdk;

namespace KvmActors.Devices.AcpiPm;

/// <summary>
/// <c>acpi-pm</c>: the ACPI PM1 event/control registers and PM timer the FADT names (ports <c>0x600-0x60b</c>,
/// one range starting at PM1_STS; see <see cref="AcpiPmRegisters"/>). A write entering S5 ends the VM normally
/// (status 0); S3 ends it as the <c>on-suspend</c> option says.
/// </summary>
/// <remarks>
/// Options: <c>on-suspend = end</c> (the only value so far: the VM ends with status 0 and "S3 suspend" in the
/// detail; resuming at the FACS waking vector needs a vCPU reset the runtime does not offer yet).
/// </remarks>
[DeviceType("acpi-pm")]
public sealed class AcpiPmDevice : DeviceActor
{
    private readonly AcpiPmRegisters _registers;

    public AcpiPmDevice(DeviceContext context) : base(context)
    {
        var options = context.Options;
        options.RejectUnknown("on-suspend");
        var onSuspend = options.GetString("on-suspend", "end");
        if (onSuspend != "end")
            throw options.Error("on-suspend", $"'{onSuspend}' is not supported (supported: end; resume is not implemented yet)");
        var started = Stopwatch.GetTimestamp();
        _registers = new AcpiPmRegisters(() => Stopwatch.GetElapsedTime(started));
    }

    protected override ulong OnRead(DeviceAccess access) => _registers.Read(access.Offset, access.Size);

    protected override void OnWrite(DeviceAccess access, ulong value)
    {
        switch (_registers.Write(access.Offset, access.Size, value))
        {
            case SleepRequest.PowerOff:
                EndVm(VmEndReason.Halted, $"the guest entered ACPI S5 (soft off) through PM1 control port 0x{access.Address:x}");
                break;
            case SleepRequest.Suspend:
                EndVm(VmEndReason.Halted, $"the guest entered ACPI S3 (suspend) through PM1 control port 0x{access.Address:x}; on-suspend = end");
                break;
        }
    }

    public const int StateVersion = 1;

    protected override DeviceState SaveState() => DeviceState.Of(Device.Type, StateVersion, _registers.Save());

    protected override void RestoreState(DeviceState state)
    {
        state.ExpectVersion(StateVersion);
        _registers.Restore(state.Read<AcpiPmState>());
    }
}

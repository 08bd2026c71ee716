using System.Diagnostics;
using KvmActors.Sdk;

namespace KvmActors.Devices.AcpiPm;

/// <summary>
/// <c>acpi-pm</c>: the ACPI PM1 event/control registers and PM timer the FADT names (ports <c>0x600-0x60b</c>,
/// one range starting at PM1_STS; see <see cref="AcpiPmRegisters"/>). A write entering S5 ends the VM normally
/// (status 0); S3 ends it or suspends it, as the <c>on-suspend</c> option says.
/// </summary>
/// <remarks>
/// <para>Options: <c>on-suspend = end</c> (default: the VM ends with status 0 and "S3 suspend" in the detail) or
/// <c>resume</c> (as QEMU's <c>pc</c> machine: the VM suspends, no vCPU runs, until a wake event whose PM1 enable bit
/// is set, so far the RTC alarm with RTC_EN; then PM1 status gets WAK_STS and RTC_STS and the VM resumes at the
/// FACS waking vector).</para>
/// <para>Writes are waited for (<see cref="DeviceTypeAttribute.WaitForWrites"/>): the vCPU that writes SLP_EN runs
/// no further instruction before the VM is suspended, as on hardware.</para>
/// </remarks>
[DeviceType("acpi-pm", WaitForWrites = true)]
public sealed class AcpiPmDevice : DeviceActor
{
    private readonly AcpiPmRegisters _registers;
    private readonly bool _resume;
    // The guest's SLP_EN write, held until the VM has suspended (so the vCPU does not run on).
    private PendingWrite? _suspendingWrite;

    public AcpiPmDevice(DeviceContext context) : base(context)
    {
        var options = context.Options;
        options.RejectUnknown("on-suspend");
        var onSuspend = options.GetString("on-suspend", "end");
        if (onSuspend is not ("end" or "resume"))
            throw options.Error("on-suspend", $"'{onSuspend}' is not supported (supported: end, resume)");
        _resume = onSuspend == "resume";
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
            case SleepRequest.Suspend when _resume:
                _suspendingWrite = DeferWriteCompletion();
                Device.Vm.Tell(new RequestVmSuspend($"the guest entered ACPI S3 (suspend) through PM1 control port 0x{access.Address:x}"), Self);
                break;
            case SleepRequest.Suspend:
                EndVm(VmEndReason.Halted, $"the guest entered ACPI S3 (suspend) through PM1 control port 0x{access.Address:x}; on-suspend = end");
                break;
        }
    }

    protected override void OnMessage(object message)
    {
        switch (message)
        {
            case VmSuspended:
                if (_suspendingWrite is { } write) CompleteWrite(write);
                _suspendingWrite = null;
                break;
            case WakeEvent wake:
                if (_registers.Wake(wake.Source)) Device.Vm.Tell(new RequestVmResume($"woken by {wake.Source}"), Self);
                break;
            default:
                base.OnMessage(message);
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

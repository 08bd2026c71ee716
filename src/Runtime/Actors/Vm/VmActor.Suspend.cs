using System.Buffers.Binary;
using Akka.Actor;
using Akka.Event;
using KvmActors.Runtime.Boot.Acpi;
using KvmActors.Runtime.Vcpu;
using KvmActors.Sdk;

namespace KvmActors.Runtime.Vm;

// ACPI S3: a device (acpi-pm) asks for a suspend; every vCPU is paused through the pause-and-kick path, and the
// device hears VmSuspended (it holds the guest's PM1 write until then, so the suspending vCPU runs no further
// instruction). Wake events (the RTC alarm) go to that device, which asks for the resume when its enable bits
// say so; then every vCPU is reset, vCPU 0 to real mode at the FACS firmware waking vector as firmware resuming
// from S3 jumps there (SeaBIOS: CS = vector >> 4, IP = vector & 0xf), and they run again.
public sealed partial class VmActor
{
    /// <summary>The device that suspended the VM, while suspended (or pausing to suspend).</summary>
    private IActorRef? _suspendedBy;
    private bool _suspendComplete;

    private void OnSuspendRequested(RequestVmSuspend request)
    {
        if (_end is not null || _suspendedBy is not null) return;
        _log.Info("VM '{0}' suspends: {1}", _spec.Name, request.Detail);
        _suspendedBy = Sender;
        _suspendComplete = false;
        PauseFor(Self);
    }

    /// <summary>Our own pause answered: true when it was the suspend's (and the device was told).</summary>
    private bool SuspendPaused()
    {
        if (_suspendedBy is not { } device || _suspendComplete) return false;
        _suspendComplete = true;
        device.Tell(new VmSuspended());
        return true;
    }

    private void OnWakeEvent(WakeEvent wake)
    {
        if (_suspendComplete && _suspendedBy is { } device) device.Forward(wake);
    }

    private void OnResumeRequested(RequestVmResume request)
    {
        if (!_suspendComplete || _machine is not { } machine || !Sender.Equals(_suspendedBy)) return;
        _suspendedBy = null;
        _suspendComplete = false;
        var vector = _spec.Machine.Platform.Acpi ? WakingVector(machine) : 0;
        if (vector == 0)
        {
            // Firmware finding no waking vector boots afresh: a reset, which this VMM reports as the VM's end.
            EndVm(VmEndReason.ResetRequested, $"resumed from ACPI S3 ({request.Detail}) with no waking vector in the FACS", 0, null);
            return;
        }
        _log.Info("VM '{0}' resumes from S3 ({1}): vCPU 0 at the waking vector 0x{2:x} in real mode", _spec.Name, request.Detail, vector);
        foreach (var (actor, id) in _vcpuActors) actor.Tell(new ResetVcpu(id == 0 ? vector : null));
        ResumeVcpus();
    }

    /// <summary>FACS.Firmware_Waking_Vector (offset 12, 32 bits), which the guest's OS wrote before sleeping.</summary>
    private static uint WakingVector(Machine machine)
    {
        Span<byte> bytes = stackalloc byte[4];
        machine.Memory.Read(AcpiLayout.Facs + 12, bytes);
        return BinaryPrimitives.ReadUInt32LittleEndian(bytes);
    }
}

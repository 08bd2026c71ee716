using Akka.Event;
using KvmActors.Sdk;

namespace KvmActors.Devices.DebugExit;

/// <summary>
/// The exit status a debug-exit write asks for. The guest writes <c>v</c>; the status is
/// <c>(v &lt;&lt; 1) | 1</c>, so it is always odd and a guest can never fake a clean exit of 0
/// (a run that ends any other way, e.g. by halting, stays distinguishable).
/// </summary>
/// <remarks>
/// A process status is 8 bits, so the VM reports <see cref="ProcessStatus"/> = <c>status &amp; 0xff</c>:
/// exactly what a shell would see as <c>$?</c> if the status were passed to <c>exit()</c>.
/// Values of <c>v</c> from 0 to 127 therefore map one-to-one onto the odd statuses 1..255; larger
/// values wrap (v = 128 gives status 0x101, reported as 1). <see cref="FullStatus"/> keeps the
/// unwrapped value for the end-of-VM detail text.
/// </remarks>
public readonly record struct DebugExitStatus(ulong Value, ulong FullStatus, int ProcessStatus)
{
    public static DebugExitStatus From(ulong value)
    {
        // value is at most 32 bits wide (port writes are 1, 2 or 4 bytes), so the shift cannot overflow.
        var full = (value << 1) | 1;
        return new DebugExitStatus(value, full, (int)(full & 0xff));
    }

    /// <summary>True when the full status did not fit in 8 bits and the reported one wrapped.</summary>
    public bool Wrapped => FullStatus > 0xff;

    public string Describe(ushort port, int size)
    {
        var text = $"guest wrote 0x{Value:x} ({size} byte{(size == 1 ? "" : "s")}) to debug-exit port 0x{port:x}: status (v << 1) | 1 = 0x{FullStatus:x}";
        return Wrapped
            ? $"{text}, reported as {ProcessStatus} (status & 0xff, as a shell sees it)"
            : $"{text} = {ProcessStatus}";
    }
}

/// <summary>
/// <c>debug-exit</c>: compatible with QEMU's <c>isa-debug-exit</c>. Any write to any port of its range
/// (usually just 0xf4, set by the device's port range in config) of value <c>v</c>, 1, 2 or 4 bytes
/// wide, ends the VM with <see cref="VmEndReason.GuestExit"/> and exit status <c>((v &lt;&lt; 1) | 1) &amp; 0xff</c>
/// (see <see cref="DebugExitStatus"/> for why the status wraps).
/// </summary>
/// <remarks>
/// <para>Options: none (an <c>options</c> block with any key is rejected).</para>
/// <para>Reads: QEMU's device is write-only; here a read returns all ones of the access width, what an
/// unclaimed port gives, so probing the port looks the same as on a machine without the device.</para>
/// <para>Snapshot: none (state-less: a restored VM gets it fresh). Its one field says the VM is already ending,
/// and an ending VM has nothing left to restore.</para>
/// <para>Only the first write ends the VM: writes that arrive while the VM is already ending (another
/// vCPU, or the same one before it is stopped) are logged at debug level and dropped, so the status
/// reported is the one the guest asked for first.</para>
/// </remarks>
[DeviceType("debug-exit")]
public sealed class DebugExitDevice : DeviceActor
{
    private bool _ended;

    public DebugExitDevice(DeviceContext context) : base(context) => ValidateOptions(context.Options);

    /// <summary>Checks a <c>debug-exit</c> options block: it takes no options.</summary>
    public static void ValidateOptions(DeviceOptions options) => options.RejectUnknown();

    protected override void OnWrite(DeviceAccess access, ulong value)
    {
        var status = DebugExitStatus.From(value & access.AllOnes);
        var detail = status.Describe((ushort)access.Address, access.Size);
        if (_ended)
        {
            Log.Debug("{0}: ignored, the VM is already ending ({1})", Device.Name, detail);
            return;
        }
        _ended = true;
        EndVm(VmEndReason.GuestExit, detail, status.ProcessStatus);
    }

    // Reads: the base class's default, all ones of the access width.
}

using KvmActors.Sdk;

namespace MyDevice;

/// <summary>The options of a <c>my-device-type</c> device (its config entry's <c>options</c> block), checked when it is created.</summary>
/// <param name="Id">What the ID register reads (<c>id</c>, 0..255, default 0x2a).</param>
public sealed record MyDeviceSettings(byte Id)
{
    public const byte DefaultId = 0x2a;

    public static MyDeviceSettings Parse(DeviceOptions options)
    {
        options.RejectUnknown("id");
        var id = options.GetInteger("id", DefaultId);
        if (id is < 0 or > 0xff) throw options.Error("id", $"{id} does not fit in a byte (0..255)");
        return new MyDeviceSettings((byte)id);
    }
}

/// <summary>
/// What a snapshot of the VM keeps of the registers: a record of the device's own, written as JSON in the state
/// file. Settings (options) are not state: a restored VM reads them from its config again.
/// </summary>
public sealed record MyDeviceState(byte Scratch, byte Writes);

/// <summary>
/// The registers as the guest sees them, with no actor around them so they can be unit-tested:
/// <list type="table">
/// <item><term>0 ID</term><description>read: the <c>id</c> option; writes are ignored.</description></item>
/// <item><term>1 SCRATCH</term><description>read/write: a byte the guest can store.</description></item>
/// <item><term>2 WRITES</term><description>read: how many writes SCRATCH has taken (wraps at 256).</description></item>
/// </list>
/// Other offsets read all ones, like an empty bus, and ignore writes.
/// </summary>
public sealed class MyDeviceRegisters(MyDeviceSettings settings)
{
    public const int Id = 0, Scratch = 1, Writes = 2;

    private byte _scratch;
    private byte _writes;

    public byte Read(ulong offset) => offset switch
    {
        Id => settings.Id,
        Scratch => _scratch,
        Writes => _writes,
        _ => 0xff,
    };

    public void Write(ulong offset, byte value)
    {
        if (offset != Scratch) return;
        _scratch = value;
        _writes++;
    }

    public MyDeviceState Save() => new(_scratch, _writes);

    /// <summary>
    /// Takes a saved state. Check every value a guest could not have produced and throw a DeviceStateException
    /// naming the field: the VM then ends with that error rather than run on an impossible state. (Every byte is
    /// a possible SCRATCH and WRITES value, so there is nothing to check here.)
    /// </summary>
    public void Restore(MyDeviceState state)
    {
        _scratch = state.Scratch;
        _writes = state.Writes;
    }
}

/// <summary>
/// <c>my-device-type</c>: a device on the port bus or MMIO (its ranges come from config). Accesses are byte
/// wide: a wider one acts on its first byte. Use it in a guest file:
/// <code>
/// guest.devices.mine { type = my-device-type, ports = ["0x520-0x527"], options.id = 0x2a }
/// </code>
/// A VM snapshot saves its registers (<see cref="SaveState"/>) and a restored VM puts them back
/// (<see cref="RestoreState"/>). A device that keeps nothing the guest can observe leaves both out: it is restored fresh.
/// </summary>
[DeviceType("my-device-type")]
public sealed class MyDeviceActor : DeviceActor
{
    private readonly MyDeviceRegisters _registers;

    public MyDeviceActor(DeviceContext context) : base(context)
    {
        // A bad option throws a ConfigException naming the key and the file: the VM ends with exit status 2.
        _registers = new MyDeviceRegisters(MyDeviceSettings.Parse(context.Options));
    }

    protected override ulong OnRead(DeviceAccess access) => _registers.Read(access.Offset);

    protected override void OnWrite(DeviceAccess access, ulong value) => _registers.Write(access.Offset, (byte)value);

    /// <summary>Bump when <see cref="MyDeviceState"/> changes shape; RestoreState may go on accepting older versions.</summary>
    public const int StateVersion = 1;

    protected override DeviceState SaveState() => DeviceState.Of(Device.Type, StateVersion, _registers.Save());

    protected override void RestoreState(DeviceState state)
    {
        state.ExpectVersion(StateVersion); // another version: a DeviceStateException naming the versions
        _registers.Restore(state.Read<MyDeviceState>()); // another shape: a DeviceStateException saying what does not fit
    }
}

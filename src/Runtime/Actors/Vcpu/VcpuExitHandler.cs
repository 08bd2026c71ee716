using System.Runtime.InteropServices;
using Akka.Actor;
using KvmActors.Runtime.Bus;
using KvmActors.Runtime.Config;
using KvmActors.Runtime.Kvm;
using KvmActors.Sdk;

namespace KvmActors.Runtime.Vcpu;

/// <summary>What the exit handler needs done outside itself: the vCPU actor, or a test's fake.</summary>
public interface IVcpuExitActions
{
    /// <summary>Tell a device an access (<see cref="PortWrite"/>, <see cref="PortRead"/>, ...), the vCPU as sender.</summary>
    void Send(IActorRef device, object access);

    /// <summary>An unmapped page or port block was touched for the first time (or the log is full): tell the VM.</summary>
    void ReportUnmapped(UnmappedAccess access);
}

/// <summary>What the vCPU does after an exit was handled.</summary>
public enum ExitOutcome
{
    /// <summary>The exit is finished: enter KVM_RUN again.</summary>
    Done,
    /// <summary>A read was sent to a device: wait for its <see cref="ReadCompleted"/>, then <see cref="VcpuExitHandler.CompleteRead"/>.</summary>
    AwaitingRead,
    /// <summary>HLT: no more KVM_RUN; the VM's halt policy decides.</summary>
    Halted,
    /// <summary>The guest cannot go on: no more KVM_RUN; the VM ends with <see cref="ExitResult.FailedExit"/> and the explanation.</summary>
    Failed,
    /// <summary>KVM_EXIT_DEBUG (a single step or a debug-register hit, <see cref="ExitResult.Dr6"/> says which): the debugger's turn.</summary>
    DebugStop,
}

/// <summary>The outcome of one exit (the failure's explanation only when it failed).</summary>
public readonly record struct ExitResult(ExitOutcome Outcome, KvmExitReason FailedExit = default, string? Explanation = null, ulong Dr6 = 0)
{
    public static ExitResult DebugStop(ulong dr6) => new(ExitOutcome.DebugStop, Dr6: dr6);
    public static readonly ExitResult Done = new(ExitOutcome.Done);
    public static readonly ExitResult AwaitingRead = new(ExitOutcome.AwaitingRead);
    public static readonly ExitResult Halted = new(ExitOutcome.Halted);
    public static ExitResult Failed(KvmExitReason exit, string explanation) => new(ExitOutcome.Failed, exit, explanation);
}

/// <summary>
/// One vCPU's exit handling, free of the actor and of /dev/kvm: decodes the exit through a <see cref="KvmRunView"/>,
/// routes port and MMIO accesses to the device that owns the address (OUT and MMIO writes told, IN and MMIO reads
/// sent and awaited, or answered from the device's read snapshot), handles unmapped accesses by policy, and
/// explains failures. Its progress through an exit (items delivered, the read in flight) is kept in
/// <see cref="VcpuProgress"/>, so a handler of a restarted actor resumes exactly (<see cref="Resume"/>).
/// </summary>
public sealed class VcpuExitHandler
{
    /// <summary>Unmapped pages/blocks a vCPU records (and reports) before it only counts them.</summary>
    public const int UnmappedLogCapacity = 64;

    private readonly int _id;
    private readonly int _vcpuCount;
    private PortBus _ports;
    private MmioBus _mmio;
    private readonly Func<ulong, bool> _isReadOnly;
    private readonly UnmappedAccessPolicy _unmapped;
    private readonly bool _readSnapshots;
    private readonly VcpuProgress _progress;
    private readonly IVcpuExitActions _actions;
    // A split irqchip's userspace IOAPIC takes the local APIC's EOIs of its level-triggered vectors.
    private readonly Action<int>? _ioapicEoi;

    // The read this vCPU waits for: one element of a (possibly rep-string) IN, or an MMIO read.
    private PendingRead _pending;

    private struct PendingRead
    {
        public bool IsMmio;
        /// <summary>An OUT to a device whose writes are waited for: each item is answered like a read.</summary>
        public bool IsWrite;
        public ushort Port;
        public int Size;
        public uint Count;
        public IActorRef Device;
        public ulong RangeFirst;
        public ulong MmioAddress;
    }

    // The read path of the device behind the last port entry (exits mostly repeat a device).
    private PortBus.Entry? _lastEntry;
    private DeviceReadPath? _lastPath;
    private IActorRef? _lastMmioDevice;
    private DeviceReadPath? _lastMmioPath;

    // How long an IN may wait for writes still being handled (by a device busy on another vCPU's thread) to be
    // handled, so it can be answered from the snapshot, before it falls back to the round trip; 0: never waits.
    private readonly long _snapshotWaitTicks;

    // Posted byte-wide OUTs told as messages made before: a PortWrite is immutable, so the same one can be told again,
    // and a console's OUT allocates nothing (kvmactors bench: 40 bytes per OUT otherwise). Direct-mapped on (port,
    // value), 64 slots (512 bytes a vCPU, made at its first byte OUT): a miss just makes a new message.
    private PortWrite?[]? _byteWrites;
    private const int ByteWriteSlots = 64;

    public VcpuExitHandler(int vcpuId, int vcpuCount, PortBus ports, MmioBus mmio, Func<ulong, bool> isReadOnly,
        UnmappedAccessPolicy unmapped, bool readSnapshots, VcpuProgress progress, IVcpuExitActions actions, TimeSpan snapshotWait = default,
        Action<int>? ioapicEoi = null)
    {
        _snapshotWaitTicks = (long)(snapshotWait.TotalSeconds * System.Diagnostics.Stopwatch.Frequency);
        _ioapicEoi = ioapicEoi;
        _id = vcpuId;
        _vcpuCount = vcpuCount;
        _ports = ports;
        _mmio = mmio;
        _isReadOnly = isReadOnly;
        _unmapped = unmapped;
        _readSnapshots = readSnapshots;
        _progress = progress;
        _actions = actions;
    }

    /// <summary>
    /// The VM moved device ranges (a PCI BAR): route by these buses from the next exit on. A read in flight keeps
    /// the device it was sent to.
    /// </summary>
    public void Reroute(PortBus ports, MmioBus mmio)
    {
        _ports = ports;
        _mmio = mmio;
        _lastEntry = null;
        _lastPath = null;
        _lastMmioDevice = null;
        _lastMmioPath = null;
        _byteWrites = null; // a port's offset in its range may differ now
    }

    /// <summary>KVM_RUN returned with an exit in kvm_run: count it and mark it pending (before any handling can fail).</summary>
    public void Begin(KvmExitReason reason)
    {
        _progress.Count(reason);
        _progress.ExitPending = true;
        _progress.ItemsDone = 0;
        _progress.ReadInFlight = false;
    }

    /// <summary>Handle the pending exit (from its start, or from the items already done).</summary>
    public ExitResult Handle(KvmRunView run)
    {
        var result = run.Reason switch
        {
            KvmExitReason.Io => Io(run),
            KvmExitReason.Mmio => Mmio(run),
            KvmExitReason.Hlt => ExitResult.Halted,
            KvmExitReason.Intr or KvmExitReason.IrqWindowOpen => ExitResult.Done,
            KvmExitReason.Debug => ExitResult.DebugStop(run.Debug.Dr6),
            KvmExitReason.IoapicEoi when _ioapicEoi is { } eoi => IoapicEoi(eoi, run.EoiVector),
            var other => ExitResult.Failed(other, Explain(run)),
        };
        if (result.Outcome != ExitOutcome.AwaitingRead) Finished();
        return result;
    }

    private static ExitResult IoapicEoi(Action<int> eoi, int vector)
    {
        eoi(vector);
        return ExitResult.Done;
    }

    /// <summary>
    /// A restarted actor finishes the exit its predecessor was handling: a read in flight is rebuilt from kvm_run
    /// and awaited (its answer, with the same sequence number, is in the mailbox or on its way); anything else
    /// is handled again from the items already done.
    /// </summary>
    public ExitResult Resume(KvmRunView run)
    {
        if (!_progress.ReadInFlight) return Handle(run);
        _pending = PendingFrom(run);
        return ExitResult.AwaitingRead;
    }

    /// <summary>The device answered the pending read: store the value; the next item of a rep-string IN is sent.</summary>
    public ExitResult CompleteRead(KvmRunView run, ulong value)
    {
        _progress.ReadInFlight = false;
        if (_pending.IsMmio)
        {
            Store(run.Mmio.Data, value);
        }
        else
        {
            if (!_pending.IsWrite) Store(run.Io.Item(_progress.ItemsDone), value);
            if (++_progress.ItemsDone < _pending.Count)
            {
                SendPendingRead(run);
                return ExitResult.AwaitingRead;
            }
        }
        Finished();
        return ExitResult.Done;
    }

    private void Finished()
    {
        _progress.ExitPending = false;
        _progress.ReadInFlight = false;
    }

    private ExitResult Io(KvmRunView run)
    {
        var io = run.Io;
        var port = io.Port;
        var size = io.Size;
        var count = io.Count;
        if (_progress.ItemsDone == 0) CollectionsMarshal.GetValueRefOrAddDefault(_progress.ExitsByPort, port, out _)++;
        var entry = _ports.Lookup(port);

        if (entry is null)
        {
            if (Unmapped(AddressSpace.Port, port, size, io.IsOut) is { } failed) return failed;
            if (io.IsIn) io.Data.Fill(0xff);
            return ExitResult.Done;
        }

        var offset = (ushort)(port - entry.Range.First);
        if (io.IsOut)
        {
            // ItemsDone counts what was delivered, so a restart never sends an item twice.
            if (entry.WaitForWrites)
            {
                // Each item waits for its answer, as an IN does: what the write caused (a BAR moved, the VM
                // suspended) is in place before the guest's next access, even one that another device takes.
                _pending = PendingFrom(run);
                SendPendingRead(run);
                return ExitResult.AwaitingRead;
            }
            var path = ReadPath(entry);
            for (; _progress.ItemsDone < count; _progress.ItemsDone++)
            {
                path.WriteSending(_id);
                _actions.Send(entry.Device, Write(port, offset, size, (uint)Load(io.Item(_progress.ItemsDone))));
            }
            return ExitResult.Done;
        }

        // A register whose read has no side effect, with no write to the device unhandled: answered from the
        // device's read snapshot, without a round trip (DeviceReadPath says when that is the same answer).
        if (_readSnapshots && ReadPath(entry).TryRead(_id, offset, size, out var snapshotValue, _snapshotWaitTicks))
        {
            for (; _progress.ItemsDone < count; _progress.ItemsDone++)
                Store(io.Item(_progress.ItemsDone), snapshotValue);
            return ExitResult.Done;
        }

        _pending = PendingFrom(run);
        SendPendingRead(run);
        return ExitResult.AwaitingRead;
    }

    private ExitResult Mmio(KvmRunView run)
    {
        var mmio = run.Mmio;
        var address = mmio.Address;
        var isWrite = mmio.IsWrite;
        var entry = _mmio.Lookup(address);
        if (entry is null && isWrite && _isReadOnly(address))
            return ExitResult.Done; // a store to ROM exits to us (KVM_MEM_READONLY): dropped, as ROM does, in every unmapped-io mode
        if (entry is null)
        {
            if (Unmapped(AddressSpace.Mmio, address, mmio.Length, isWrite) is { } failed) return failed;
            if (!isWrite) mmio.Data.Fill(0xff);
            return ExitResult.Done;
        }
        if (isWrite)
        {
            if (_progress.ItemsDone == 0)
            {
                MmioReadPath(entry.Device).WriteSending(_id);
                _actions.Send(entry.Device, new MmioWrite(address, address - entry.Range.First, mmio.Length, Load(mmio.Data), _id));
                _progress.ItemsDone = 1;
            }
            return ExitResult.Done;
        }
        _pending = PendingFrom(run);
        SendPendingRead(run);
        return ExitResult.AwaitingRead;
    }

    private DeviceReadPath ReadPath(PortBus.Entry entry)
    {
        if (!ReferenceEquals(entry, _lastEntry))
        {
            _lastPath = DeviceReadPath.Of(entry.Device, _vcpuCount);
            _lastEntry = entry;
        }
        return _lastPath!;
    }

    private DeviceReadPath MmioReadPath(IActorRef device)
    {
        if (!ReferenceEquals(device, _lastMmioDevice))
        {
            _lastMmioPath = DeviceReadPath.Of(device, _vcpuCount);
            _lastMmioDevice = device;
        }
        return _lastMmioPath!;
    }

    // A waited-for write's device is nearly always the last port entry's: its cached path, else the table's.
    private DeviceReadPath ReadPathOf(IActorRef device) =>
        _lastEntry is { } e && ReferenceEquals(e.Device, device) ? _lastPath! : DeviceReadPath.Of(device, _vcpuCount);

    private PortWrite Write(ushort port, ushort offset, int size, uint value)
    {
        if (size != 1) return new PortWrite(port, offset, size, value, _id);
        value &= 0xff;
        _byteWrites ??= new PortWrite?[ByteWriteSlots];
        ref var cached = ref _byteWrites[(value ^ port ^ (port >> 6)) % ByteWriteSlots];
        if (cached is null || cached.Value != value || cached.Port != port || cached.Offset != offset)
            cached = new PortWrite(port, offset, 1, value, _id);
        return cached;
    }

    /// <summary>The read of the pending exit, rebuilt from kvm_run (so a restarted actor can rebuild it too).</summary>
    private PendingRead PendingFrom(KvmRunView run)
    {
        if (run.Reason == KvmExitReason.Mmio)
        {
            var mmio = run.Mmio;
            var entry = _mmio.Lookup(mmio.Address)!;
            return new PendingRead
            {
                IsMmio = true, Size = mmio.Length, Count = 1, MmioAddress = mmio.Address, Device = entry.Device, RangeFirst = entry.Range.First,
            };
        }
        var io = run.Io;
        var e = _ports.Lookup(io.Port)!;
        return new PendingRead { IsWrite = io.IsOut, Port = io.Port, Size = io.Size, Count = io.Count, Device = e.Device, RangeFirst = e.Range.First };
    }

    private void SendPendingRead(KvmRunView run)
    {
        var seq = ++_progress.ReadSeq;
        var offset = (ushort)(_pending.Port - _pending.RangeFirst);
        if (_pending.IsWrite) ReadPathOf(_pending.Device).WriteSending(_id);
        object read = _pending.IsMmio
            ? new MmioRead(_pending.MmioAddress, _pending.MmioAddress - _pending.RangeFirst, _pending.Size, _id, seq)
            : _pending.IsWrite
                ? new PortWrite(_pending.Port, offset, _pending.Size, (uint)Load(run.Io.Item(_progress.ItemsDone)), _id, seq)
                : new PortRead(_pending.Port, offset, _pending.Size, _id, seq);
        _progress.ReadInFlight = true;
        _actions.Send(_pending.Device, read);
    }

    /// <summary>An access nobody claims: the guest's failure in strict mode, else null (reads all ones, writes dropped).</summary>
    private ExitResult? Unmapped(AddressSpace space, ulong address, int size, bool isWrite)
    {
        if (_unmapped == UnmappedAccessPolicy.Strict)
        {
            var what = space == AddressSpace.Port ? $"port 0x{address:x}" : $"MMIO address 0x{address:x}";
            return ExitResult.Failed(space == AddressSpace.Port ? KvmExitReason.Io : KvmExitReason.Mmio,
                $"{(isWrite ? "write to" : "read from")} unmapped {what} ({size} bytes) in strict mode");
        }
        switch (_progress.Unmapped.Record(space, address))
        {
            case UnmappedAccessLog.Outcome.NewEntry:
                _actions.ReportUnmapped(new UnmappedAccess(_id, space, address, size, isWrite));
                break;
            case UnmappedAccessLog.Outcome.Full:
                _actions.ReportUnmapped(new UnmappedAccess(_id, space, address, size, isWrite, LogFull: true));
                break;
        }
        return null;
    }

    /// <summary>What a failure exit means, from its fields.</summary>
    public static string Explain(KvmRunView run) => run.Reason switch
    {
        KvmExitReason.Shutdown => "the guest shut the vCPU down (triple fault)",
        KvmExitReason.FailEntry => $"VM entry failed: hardware_entry_failure_reason 0x{run.FailEntryReason:x}",
        KvmExitReason.InternalError => $"KVM internal error: suberror {run.InternalError.Suberror}" +
                                       (run.InternalError.Suberror == KvmRunView.InternalErrorExit.EmulationFailure ? " (instruction emulation failed)" : ""),
        KvmExitReason.Unknown => $"unknown exit: hardware_exit_reason 0x{run.HardwareExitReason:x}",
        KvmExitReason.SystemEvent => $"system event type {run.SystemEventType}",
        var r => $"unhandled exit reason {(uint)r}",
    };

    /// <summary>Little-endian value of up to 8 bytes.</summary>
    private static ulong Load(ReadOnlySpan<byte> data)
    {
        ulong v = 0;
        for (var i = 0; i < data.Length && i < 8; i++) v |= (ulong)data[i] << (8 * i);
        return v;
    }

    private static void Store(Span<byte> data, ulong value)
    {
        for (var i = 0; i < data.Length && i < 8; i++) data[i] = (byte)(value >> (8 * i));
    }
}

using Akka.Actor;
using Akka.Event;
using KvmActors.Runtime.Bus;
using KvmActors.Sdk;
using KvmActors.Runtime.Config;
using KvmActors.Runtime.Devices;
using KvmActors.Runtime.Kvm;
using KvmActors.Runtime.Memory;
using KvmActors.Runtime.Vm;

namespace KvmActors.Runtime.Vcpu;

/// <summary>What a vCPU actor needs; owned by the VM, so a restarted actor gets the same vCPU and progress back.</summary>
public sealed record VcpuSetup(
    KvmVcpu Vcpu,
    PortBus Ports,
    MmioBus Mmio,
    IActorRef HaltController,
    GuestMemory Memory,
    UnmappedAccessPolicy Unmapped,
    int KickSignal,
    VcpuProgress Progress,
    VcpuFaults? Faults = null);

/// <summary>
/// One vCPU. Runs on its own pinned thread and loops on KVM_RUN by sending itself <see cref="RunGuest"/>,
/// so its mailbox is served between two exits. Each exit becomes a message: OUT and MMIO writes are
/// told to the device that owns the address; IN and MMIO reads wait (in the <c>AwaitingRead</c>
/// behaviour, still serving the mailbox) for the device's <see cref="ReadCompleted"/>; HLT goes to the
/// halt controller; a guest failure goes to the VM with registers and the faulting instruction.
/// The guest's state lives in KVM behind the vCPU fd and the progress of the exit being handled in
/// <see cref="VcpuProgress"/>, not in this object: a restarted actor resumes exactly where this one was.
/// </summary>
public sealed unsafe class VcpuActor : UntypedActor
{
    private readonly VcpuSetup _setup;
    private readonly KvmVcpu _vcpu;
    private readonly VcpuProgress _progress;
    private readonly int _id;
    private readonly ILoggingAdapter _log = Context.GetLogger();

    private int _managedThreadId;
    private int _nativeThreadId;
    private string _threadName = "";
    private readonly HashSet<(AddressSpace, ulong)> _unmappedReported = new();

    // The read this vCPU waits for: one element of a (possibly rep-string) IN, or an MMIO read.
    private PendingRead _pending;

    private struct PendingRead
    {
        public bool IsMmio;
        public ushort Port;
        public int Size;
        public uint Count;
        public int DataOffset;
        public IActorRef Device;
        public ulong RangeFirst;
        public ulong MmioAddress;
    }

    public VcpuActor(VcpuSetup setup)
    {
        _setup = setup;
        _vcpu = setup.Vcpu;
        _progress = setup.Progress;
        _id = setup.Vcpu.Id;
    }

    public static Props Props(VcpuSetup setup) =>
        Akka.Actor.Props.Create(() => new VcpuActor(setup)).WithDispatcher(KvmActorsConfig.VcpuDispatcherId);

    protected override void PreStart()
    {
        _threadName = $"vcpu-{_id}";
        Thread.CurrentThread.Name = _threadName;
        _managedThreadId = Environment.CurrentManagedThreadId;
        _progress.ThreadsSeen.Add(_managedThreadId);
        _nativeThreadId = VcpuKick.CurrentNativeThreadId();
        VcpuKick.PrepareThread(_vcpu, _setup.KickSignal);
        DeviceDispatcher.RunDevicesOnThisThread(); // idle devices handle this vCPU's accesses on this thread
        var config = Context.System.Settings.Config;
        _maxExitsPerMessage = Math.Max(1, config.GetInt("kvmactors.vcpu.exits-per-message", 256));
        _readSnapshots = config.GetBoolean("kvmactors.devices.read-snapshots", true);
        Context.Parent.Tell(new VcpuStarted(_id, _nativeThreadId, _threadName));

        if (_progress.Parked) Become(Parked);
        else if (_progress.ExitPending) ResumePendingExit();
        else Self.Tell(RunGuest.Instance);
    }

    protected override void PostRestart(Exception reason)
    {
        _progress.Restarts++;
        _log.Warning("vcpu {0} restarted after {1}: {2}; resuming the guest", _id, reason.GetType().Name, reason.Message);
        base.PostRestart(reason);
    }

    protected override void OnReceive(object message)
    {
        NoteThread();
        switch (message)
        {
            case RunGuest:
                if (_progress.Paused) _progress.RunDeferred = true;
                else RunLoop();
                break;
            default:
                Common(message);
                break;
        }
    }

    private void AwaitingRead(object message)
    {
        NoteThread();
        switch (message)
        {
            case ReadCompleted done when done.Seq == _progress.ReadSeq:
                CompleteRead(done.Value);
                break;
            case RunGuest:
                break;
            default:
                Common(message);
                break;
        }
    }

    /// <summary>After HLT or a guest failure: no more KVM_RUN; only stop (or pause bookkeeping) from here.</summary>
    private void Parked(object message)
    {
        NoteThread();
        if (message is not RunGuest) Common(message);
    }

    /// <summary>Messages every behaviour handles the same way.</summary>
    private void Common(object message)
    {
        switch (message)
        {
            case StopVcpu stop:
                StopWith(stop.Why);
                break;
            case PauseVcpu:
                _progress.Paused = true;
                Sender.Tell(new VcpuPaused(_id));
                break;
            case ResumeVcpu:
                _progress.Paused = false;
                if (_progress.RunDeferred)
                {
                    _progress.RunDeferred = false;
                    Self.Tell(RunGuest.Instance);
                }
                break;
            case ReadCompleted:
                break; // a late answer to a read nobody waits for any more
            default:
                Unhandled(message);
                break;
        }
    }

    private void NoteThread()
    {
        var t = Environment.CurrentManagedThreadId;
        if (t != _managedThreadId) _progress.ThreadsSeen.Add(t);
    }

    // The exit loop: one RunGuest message runs the guest again and again as long as each exit is finished
    // on the spot and nothing waits in the mailbox (checked after every exit, so a stop, pause or answer is
    // served at the next exit, as with one message per exit). At most kvmactors.vcpu.exits-per-message exits
    // per message, so system messages (which HasMessages does not see) wait a bounded time; a kick ends the
    // loop at once. kvmactors bench: one self-message per exit cost ~0.3 µs of a ~8 µs exit (README,
    // "Design: the exit path").
    private int _maxExitsPerMessage = 256;
    private bool _readSnapshots = true; // kvmactors.devices.read-snapshots
    private bool _inExitLoop;   // RunOnce is being called from RunLoop
    private bool _runAgain;     // the exit just handled is finished: the loop may enter KVM_RUN again
    private ActorCell? _cell;
    private ExitTiming.Probe _timing; // kvmactors bench only (ExitTiming.Enabled)

    private void RunLoop()
    {
        _cell ??= (ActorCell)Context;
        _inExitLoop = true;
        try
        {
            var budget = _maxExitsPerMessage;
            do
            {
                _runAgain = false;
                RunOnce();
            } while (_runAgain && --budget > 0 && !_cell.HasMessages);
        }
        finally
        {
            _inExitLoop = false;
            _timing.Flush();
        }
        if (_runAgain) Self.Tell(RunGuest.Instance);
    }

    private void RunOnce()
    {
        if (_setup.Faults is { KvmRunErrno: > 0 } f && f.Fires(_progress.Exits + 1, f.KvmRunErrnoAfterExits)
            && _progress.KvmRunFaultFiredAt != _progress.Exits)
        {
            _progress.KvmRunFaultFiredAt = _progress.Exits;
            throw new KvmException("KVM_RUN", f.KvmRunErrno, $"vcpu {_id} (injected fault)");
        }

        var timed = ExitTiming.Enabled;
        if (timed) _timing.BeforeRun();
        var err = _vcpu.Run();
        if (timed) _timing.AfterRun();
        if (err != 0)
        {
            // EINTR/EAGAIN: a kick (or a signal) got us out; the mailbox is served before the next run.
            VcpuKick.Consume(_vcpu, _setup.KickSignal);
            _progress.Count(KvmExitReason.Intr);
            Self.Tell(RunGuest.Instance);
            return;
        }
        var reason = _vcpu.ExitReason;
        _progress.Count(reason);
        _progress.ExitPending = true;
        _progress.ItemsDone = 0;
        _progress.ReadInFlight = false;
        if (_setup.Faults is { ThrowAfterExits: > 0 } tf && tf.Fires(_progress.Exits, tf.ThrowAfterExits))
            throw new InjectedFaultException($"injected fault: vcpu {_id} failed handling exit {_progress.Exits} ({reason})");
        HandleExit(reason);
    }

    /// <summary>A restarted actor finishes the exit its predecessor was handling.</summary>
    private void ResumePendingExit()
    {
        if (_progress.ReadInFlight)
        {
            // The read was sent; its answer (same Seq) is in the mailbox or on its way.
            _pending = PendingFromRun(_vcpu.ExitReason);
            Become(AwaitingRead);
            return;
        }
        HandleExit(_vcpu.ExitReason);
    }

    private void HandleExit(KvmExitReason reason)
    {
        switch (reason)
        {
            case KvmExitReason.Io:
                HandleIo();
                break;
            case KvmExitReason.Mmio:
                HandleMmio();
                break;
            case KvmExitReason.Hlt:
                _progress.Halted = true;
                Park();
                _setup.HaltController.Tell(new VcpuHalted(_id));
                break;
            case KvmExitReason.Intr:
            case KvmExitReason.IrqWindowOpen:
                ExitDone();
                break;
            default:
                GuestFailed(reason, ExplainFailure(reason));
                break;
        }
    }

    private void ExitDone()
    {
        _progress.ExitPending = false;
        _progress.ReadInFlight = false;
        if (_inExitLoop) _runAgain = true;
        else Self.Tell(RunGuest.Instance);
    }

    private void Park()
    {
        _progress.ExitPending = false;
        _progress.Parked = true;
        Become(Parked);
    }

    private void HandleIo()
    {
        var run = _vcpu.RunArea;
        var dir = run[KvmRunLayout.IoDirection];
        var size = (int)run[KvmRunLayout.IoSize];
        var port = *(ushort*)(run + KvmRunLayout.IoPort);
        var count = *(uint*)(run + KvmRunLayout.IoCount);
        var dataOffset = (int)*(ulong*)(run + KvmRunLayout.IoDataOffset);
        if (_progress.ItemsDone == 0) System.Runtime.InteropServices.CollectionsMarshal.GetValueRefOrAddDefault(_progress.ExitsByPort, port, out _)++;
        var entry = _setup.Ports.Lookup(port);

        if (entry is null)
        {
            if (!Unmapped(AddressSpace.Port, port, size, dir == KvmRunLayout.IoOut)) return;
            if (dir == KvmRunLayout.IoIn) new Span<byte>(run + dataOffset, (int)(size * count)).Fill(0xff);
            ExitDone();
            return;
        }

        var offset = (ushort)(port - entry.Range.First);
        if (dir == KvmRunLayout.IoOut)
        {
            // ItemsDone counts what was delivered, so a restart never sends an item twice.
            var writePath = ReadPath(entry);
            for (; _progress.ItemsDone < count; _progress.ItemsDone++)
            {
                writePath.WriteSending(_id);
                entry.Device.Tell(new PortWrite(port, offset, size, ReadData(run + dataOffset + _progress.ItemsDone * size, size), _id), Self);
            }
            ExitDone();
            return;
        }

        // A register whose read has no side effect, with no write to the device unhandled: answered from the
        // device's read snapshot, without a round trip (DeviceReadPath says when that is the same answer).
        if (_readSnapshots && ReadPath(entry).TryRead(_id, offset, size, out var snapshotValue))
        {
            for (; _progress.ItemsDone < count; _progress.ItemsDone++)
                WriteData(run + dataOffset + _progress.ItemsDone * size, size, snapshotValue);
            ExitDone();
            return;
        }

        _pending = PendingFromRun(KvmExitReason.Io);
        SendPendingRead();
    }

    // The read path of the device behind a port entry (the last one is kept: exits mostly repeat a device).
    private PortBus.Entry? _lastEntry;
    private DeviceReadPath? _lastPath;

    private DeviceReadPath ReadPath(PortBus.Entry entry)
    {
        if (!ReferenceEquals(entry, _lastEntry))
        {
            _lastPath = DeviceReadPath.Of(entry.Device);
            _lastEntry = entry;
        }
        return _lastPath!;
    }

    private void HandleMmio()
    {
        var run = _vcpu.RunArea;
        var address = *(ulong*)(run + KvmRunLayout.MmioPhysAddr);
        var len = (int)*(uint*)(run + KvmRunLayout.MmioLen);
        var isWrite = run[KvmRunLayout.MmioIsWrite] != 0;
        var entry = _setup.Mmio.Lookup(address);
        if (entry is null && isWrite && _setup.Memory.IsReadOnly(address))
        {
            // A store to ROM exits to us (KVM_MEM_READONLY): dropped, as ROM does, in every unmapped-io mode.
            ExitDone();
            return;
        }
        if (entry is null)
        {
            if (!Unmapped(AddressSpace.Mmio, address, len, isWrite)) return;
            if (!isWrite) new Span<byte>(run + KvmRunLayout.MmioData, len).Fill(0xff);
            ExitDone();
            return;
        }
        if (isWrite)
        {
            if (_progress.ItemsDone == 0)
            {
                DeviceReadPath.Of(entry.Device).WriteSending(_id);
                entry.Device.Tell(new MmioWrite(address, address - entry.Range.First, len, ReadData64(run + KvmRunLayout.MmioData, len), _id), Self);
                _progress.ItemsDone = 1;
            }
            ExitDone();
            return;
        }
        _pending = PendingFromRun(KvmExitReason.Mmio);
        SendPendingRead();
    }

    /// <summary>The read of the pending exit, rebuilt from kvm_run (so a restarted actor can rebuild it too).</summary>
    private PendingRead PendingFromRun(KvmExitReason reason)
    {
        var run = _vcpu.RunArea;
        if (reason == KvmExitReason.Mmio)
        {
            var address = *(ulong*)(run + KvmRunLayout.MmioPhysAddr);
            var entry = _setup.Mmio.Lookup(address)!;
            return new PendingRead
            {
                IsMmio = true, Size = (int)*(uint*)(run + KvmRunLayout.MmioLen), Count = 1, MmioAddress = address,
                Device = entry.Device, RangeFirst = entry.Range.First,
            };
        }
        var port = *(ushort*)(run + KvmRunLayout.IoPort);
        var e = _setup.Ports.Lookup(port)!;
        return new PendingRead
        {
            Port = port, Size = run[KvmRunLayout.IoSize], Count = *(uint*)(run + KvmRunLayout.IoCount),
            DataOffset = (int)*(ulong*)(run + KvmRunLayout.IoDataOffset), Device = e.Device, RangeFirst = e.Range.First,
        };
    }

    private void SendPendingRead()
    {
        var seq = ++_progress.ReadSeq;
        object read = _pending.IsMmio
            ? new MmioRead(_pending.MmioAddress, _pending.MmioAddress - _pending.RangeFirst, _pending.Size, _id, seq)
            : new PortRead(_pending.Port, (ushort)(_pending.Port - _pending.RangeFirst), _pending.Size, _id, seq);
        _pending.Device.Tell(read, Self);
        _progress.ReadInFlight = true;
        Become(AwaitingRead);
    }

    private void CompleteRead(ulong value)
    {
        var run = _vcpu.RunArea;
        _progress.ReadInFlight = false;
        if (_pending.IsMmio)
        {
            WriteData(run + KvmRunLayout.MmioData, _pending.Size, value);
        }
        else
        {
            WriteData(run + _pending.DataOffset + _progress.ItemsDone * _pending.Size, _pending.Size, value);
            if (++_progress.ItemsDone < _pending.Count)
            {
                SendPendingRead();
                return;
            }
        }
        Become(OnReceive);
        ExitDone();
    }

    /// <summary>An access nobody claims. Returns false if the guest is failed for it (strict mode).</summary>
    private bool Unmapped(AddressSpace space, ulong address, int size, bool isWrite)
    {
        if (_setup.Unmapped == UnmappedAccessPolicy.Strict)
        {
            var what = space == AddressSpace.Port ? $"port 0x{address:x}" : $"MMIO address 0x{address:x}";
            GuestFailed(space == AddressSpace.Port ? KvmExitReason.Io : KvmExitReason.Mmio,
                $"{(isWrite ? "write to" : "read from")} unmapped {what} ({size} bytes) in strict mode");
            return false;
        }
        if (_unmappedReported.Add((space, address)))
            Context.Parent.Tell(new UnmappedAccess(_id, space, address, size, isWrite));
        return true;
    }

    private static uint ReadData(byte* p, int size) => size switch
    {
        1 => *p,
        2 => *(ushort*)p,
        _ => *(uint*)p,
    };

    private static ulong ReadData64(byte* p, int len)
    {
        ulong v = 0;
        for (var i = 0; i < len && i < 8; i++) v |= (ulong)p[i] << (8 * i);
        return v;
    }

    private static void WriteData(byte* p, int size, ulong value)
    {
        for (var i = 0; i < size && i < 8; i++) p[i] = (byte)(value >> (8 * i));
    }

    private string ExplainFailure(KvmExitReason reason)
    {
        var run = _vcpu.RunArea;
        return reason switch
        {
            KvmExitReason.Shutdown => "the guest shut the vCPU down (triple fault)",
            KvmExitReason.FailEntry => $"VM entry failed: hardware_entry_failure_reason 0x{*(ulong*)(run + KvmRunLayout.FailEntryReason):x}",
            KvmExitReason.InternalError => $"KVM internal error: suberror {*(uint*)(run + KvmRunLayout.InternalSuberror)}" +
                                           (*(uint*)(run + KvmRunLayout.InternalSuberror) == 1 ? " (instruction emulation failed)" : ""),
            KvmExitReason.Unknown => $"unknown exit: hardware_exit_reason 0x{*(ulong*)(run + KvmRunLayout.HwExitReason):x}",
            KvmExitReason.SystemEvent => $"system event type {*(uint*)(run + KvmRunLayout.SystemEventType)}",
            _ => $"unhandled exit reason {(uint)reason}",
        };
    }

    private void GuestFailed(KvmExitReason reason, string explanation)
    {
        var regs = _vcpu.GetRegs();
        var sregs = _vcpu.GetSregs();
        var name = Enum.IsDefined(reason) ? $"KVM_EXIT_{ToUpperSnake(reason.ToString())}" : $"exit reason {(uint)reason}";
        var insn = FaultingInstruction.Describe(_setup.Memory, regs, sregs);
        Park();
        Context.Parent.Tell(new VcpuGuestFailed(new GuestFailureInfo(_id, name, explanation, regs, sregs, insn)));
    }

    private static string ToUpperSnake(string s) =>
        string.Concat(s.Select((c, i) => i > 0 && char.IsUpper(c) ? "_" + c : char.ToUpperInvariant(c).ToString()));

    private void StopWith(string why)
    {
        KvmRegs? regs = null;
        try { regs = _vcpu.GetRegs(); } catch (KvmException e) { _log.Warning("vcpu {0}: final registers unavailable: {1}", _id, e.Message); }
        var byReason = new Dictionary<string, long>();
        for (var i = 0; i < _progress.ExitsByReason.Length; i++)
            if (_progress.ExitsByReason[i] > 0)
                byReason[Enum.IsDefined((KvmExitReason)i) ? ((KvmExitReason)i).ToString() : i.ToString()] = _progress.ExitsByReason[i];
        var summary = new VcpuSummary(_id, _threadName, _nativeThreadId, _progress.ThreadsSeen.Count, _progress.Exits, _progress.Halted, regs,
            byReason, new Dictionary<ushort, long>(_progress.ExitsByPort), _progress.Restarts);
        Context.Parent.Tell(new VcpuStopped(summary));
        Context.Stop(Self);
    }
}

using Akka.Actor;
using Akka.Event;
using KvmActors.Runtime.Bus;
using KvmActors.Runtime.Config;
using KvmActors.Runtime.Kvm;
using KvmActors.Runtime.Memory;
using KvmActors.Runtime.Vm;

namespace KvmActors.Runtime.Vcpu;

/// <summary>What a vCPU actor needs; owned by the VM, so a restarted actor gets the same vCPU back.</summary>
public sealed record VcpuSetup(
    KvmVcpu Vcpu,
    PortBus Ports,
    MmioBus Mmio,
    IActorRef HaltController,
    GuestMemory Memory,
    UnmappedAccessPolicy Unmapped,
    int KickSignal);

/// <summary>
/// One vCPU. Runs on its own pinned thread and loops on KVM_RUN by sending itself <see cref="RunGuest"/>,
/// so its mailbox is served between two exits. Each exit becomes a message: OUT and MMIO writes are
/// told to the device that owns the address; IN and MMIO reads wait (in the <c>AwaitingRead</c>
/// behaviour, still serving the mailbox) for the device's <see cref="ReadCompleted"/>; HLT goes to the
/// halt controller; a guest failure goes to the VM with registers and the faulting instruction.
/// The guest's state lives in KVM behind the vCPU fd, not here.
/// </summary>
public sealed unsafe class VcpuActor : UntypedActor
{
    private readonly VcpuSetup _setup;
    private readonly KvmVcpu _vcpu;
    private readonly int _id;
    private readonly ILoggingAdapter _log = Context.GetLogger();

    // The thread this actor was started on, and how many distinct threads ever ran it (should stay 1).
    private int _managedThreadId;
    private readonly HashSet<int> _threadsSeen = new();
    private int _nativeThreadId;
    private string _threadName = "";

    private long _exits;
    private readonly long[] _exitsByReason = new long[32];
    private readonly Dictionary<ushort, long> _exitsByPort = new();
    private readonly HashSet<(AddressSpace, ulong)> _unmappedReported = new();
    private bool _halted;

    // The read this vCPU is waiting for: one element of a (possibly rep-string) IN, or an MMIO read.
    private long _readSeq;
    private PendingRead _pending;

    private struct PendingRead
    {
        public bool IsMmio;
        public ushort Port;
        public int Size;
        public uint Count;
        public uint Index;
        public int DataOffset;
        public PortBus.Entry? PortEntry;
        public MmioBus.Entry? MmioEntry;
        public ulong MmioAddress;
    }

    public VcpuActor(VcpuSetup setup)
    {
        _setup = setup;
        _vcpu = setup.Vcpu;
        _id = setup.Vcpu.Id;
    }

    public static Props Props(VcpuSetup setup) =>
        Akka.Actor.Props.Create(() => new VcpuActor(setup)).WithDispatcher(KvmActorsConfig.VcpuDispatcherId);

    protected override void PreStart()
    {
        _threadName = $"vcpu-{_id}";
        Thread.CurrentThread.Name = _threadName;
        _managedThreadId = Environment.CurrentManagedThreadId;
        _threadsSeen.Add(_managedThreadId);
        _nativeThreadId = VcpuKick.CurrentNativeThreadId();
        VcpuKick.PrepareThread(_vcpu, _setup.KickSignal);
        Context.Parent.Tell(new VcpuStarted(_id, _nativeThreadId, _threadName));
        Self.Tell(RunGuest.Instance);
    }

    protected override void OnReceive(object message)
    {
        NoteThread();
        switch (message)
        {
            case RunGuest:
                RunOnce();
                break;
            case StopVcpu stop:
                StopWith(stop.Why);
                break;
            case ReadCompleted:
                // A late answer to a read this incarnation no longer waits for: nothing to complete.
                break;
            default:
                Unhandled(message);
                break;
        }
    }

    private void AwaitingRead(object message)
    {
        NoteThread();
        switch (message)
        {
            case ReadCompleted done when done.Seq == _readSeq:
                CompleteRead(done.Value);
                break;
            case ReadCompleted:
                break;
            case StopVcpu stop:
                StopWith(stop.Why);
                break;
            case RunGuest:
                break;
            default:
                Unhandled(message);
                break;
        }
    }

    /// <summary>After HLT or a guest failure: no more KVM_RUN until the VM says what happens.</summary>
    private void Parked(object message)
    {
        NoteThread();
        switch (message)
        {
            case StopVcpu stop:
                StopWith(stop.Why);
                break;
            case RunGuest:
            case ReadCompleted:
                break;
            default:
                Unhandled(message);
                break;
        }
    }

    private void NoteThread()
    {
        var t = Environment.CurrentManagedThreadId;
        if (t != _managedThreadId) _threadsSeen.Add(t);
    }

    private void RunOnce()
    {
        var err = _vcpu.Run();
        if (err != 0)
        {
            // EINTR/EAGAIN: a kick (or a signal) got us out; the mailbox is served before the next run.
            VcpuKick.Consume(_vcpu, _setup.KickSignal);
            Count(KvmExitReason.Intr);
            Self.Tell(RunGuest.Instance);
            return;
        }
        var reason = _vcpu.ExitReason;
        Count(reason);
        switch (reason)
        {
            case KvmExitReason.Io:
                HandleIo();
                break;
            case KvmExitReason.Mmio:
                HandleMmio();
                break;
            case KvmExitReason.Hlt:
                _halted = true;
                _setup.HaltController.Tell(new VcpuHalted(_id));
                Become(Parked);
                break;
            case KvmExitReason.Intr:
            case KvmExitReason.IrqWindowOpen:
                Self.Tell(RunGuest.Instance);
                break;
            default:
                GuestFailed(reason, ExplainFailure(reason));
                break;
        }
    }

    private void Count(KvmExitReason reason)
    {
        _exits++;
        var i = (int)reason;
        if (i < _exitsByReason.Length) _exitsByReason[i]++;
    }

    private void HandleIo()
    {
        var run = _vcpu.RunArea;
        var dir = run[KvmRunLayout.IoDirection];
        var size = (int)run[KvmRunLayout.IoSize];
        var port = *(ushort*)(run + KvmRunLayout.IoPort);
        var count = *(uint*)(run + KvmRunLayout.IoCount);
        var dataOffset = (int)*(ulong*)(run + KvmRunLayout.IoDataOffset);
        _exitsByPort[port] = _exitsByPort.GetValueOrDefault(port) + 1;
        var entry = _setup.Ports.Lookup(port);

        if (entry is null)
        {
            if (!Unmapped(AddressSpace.Port, port, size, dir == KvmRunLayout.IoOut)) return;
            if (dir == KvmRunLayout.IoIn) new Span<byte>(run + dataOffset, (int)(size * count)).Fill(0xff);
            Self.Tell(RunGuest.Instance);
            return;
        }

        var offset = (ushort)(port - entry.Range.First);
        if (dir == KvmRunLayout.IoOut)
        {
            for (var i = 0; i < count; i++)
                entry.Device.Tell(new PortWrite(port, offset, size, ReadData(run + dataOffset + i * size, size), _id), Self);
            Self.Tell(RunGuest.Instance);
            return;
        }

        _pending = new PendingRead { Port = port, Size = size, Count = count, Index = 0, DataOffset = dataOffset, PortEntry = entry };
        SendPendingRead();
        Become(AwaitingRead);
    }

    private void HandleMmio()
    {
        var run = _vcpu.RunArea;
        var address = *(ulong*)(run + KvmRunLayout.MmioPhysAddr);
        var len = (int)*(uint*)(run + KvmRunLayout.MmioLen);
        var isWrite = run[KvmRunLayout.MmioIsWrite] != 0;
        var entry = _setup.Mmio.Lookup(address);
        if (entry is null)
        {
            if (!Unmapped(AddressSpace.Mmio, address, len, isWrite)) return;
            if (!isWrite) new Span<byte>(run + KvmRunLayout.MmioData, len).Fill(0xff);
            Self.Tell(RunGuest.Instance);
            return;
        }
        if (isWrite)
        {
            entry.Device.Tell(new MmioWrite(address, address - entry.Range.First, len, ReadData64(run + KvmRunLayout.MmioData, len), _id), Self);
            Self.Tell(RunGuest.Instance);
            return;
        }
        _pending = new PendingRead { IsMmio = true, Size = len, Count = 1, MmioEntry = entry, MmioAddress = address };
        SendPendingRead();
        Become(AwaitingRead);
    }

    private void SendPendingRead()
    {
        _readSeq++;
        if (_pending.IsMmio)
        {
            var e = _pending.MmioEntry!;
            e.Device.Tell(new MmioRead(_pending.MmioAddress, _pending.MmioAddress - e.Range.First, _pending.Size, _id, _readSeq), Self);
        }
        else
        {
            var e = _pending.PortEntry!;
            e.Device.Tell(new PortRead(_pending.Port, (ushort)(_pending.Port - e.Range.First), _pending.Size, _id, _readSeq), Self);
        }
    }

    private void CompleteRead(ulong value)
    {
        var run = _vcpu.RunArea;
        if (_pending.IsMmio)
        {
            WriteData(run + KvmRunLayout.MmioData, _pending.Size, value);
        }
        else
        {
            WriteData(run + _pending.DataOffset + _pending.Index * _pending.Size, _pending.Size, value);
            if (++_pending.Index < _pending.Count)
            {
                SendPendingRead();
                return;
            }
        }
        Become(OnReceive);
        Self.Tell(RunGuest.Instance);
    }

    /// <summary>An access nobody claims. Returns false if the VM is ending the guest (strict mode).</summary>
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
        Context.Parent.Tell(new VcpuGuestFailed(new GuestFailureInfo(_id, name, explanation, regs, sregs, insn)));
        Become(Parked);
    }

    private static string ToUpperSnake(string s) =>
        string.Concat(s.Select((c, i) => i > 0 && char.IsUpper(c) ? "_" + c : char.ToUpperInvariant(c).ToString()));

    private void StopWith(string why)
    {
        KvmRegs? regs = null;
        try { regs = _vcpu.GetRegs(); } catch (KvmException e) { _log.Warning("vcpu {0}: final registers unavailable: {1}", _id, e.Message); }
        var byReason = new Dictionary<string, long>();
        for (var i = 0; i < _exitsByReason.Length; i++)
            if (_exitsByReason[i] > 0)
                byReason[Enum.IsDefined((KvmExitReason)i) ? ((KvmExitReason)i).ToString() : i.ToString()] = _exitsByReason[i];
        var summary = new VcpuSummary(_id, _threadName, _nativeThreadId, _threadsSeen.Count, _exits, _halted, regs,
            byReason, new Dictionary<ushort, long>(_exitsByPort));
        Context.Parent.Tell(new VcpuStopped(summary));
        Context.Stop(Self);
    }
}

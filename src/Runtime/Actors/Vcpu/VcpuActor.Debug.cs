using Akka.Actor;
using KvmActors.Runtime.Debug;
using KvmActors.Runtime.Kvm;
using KvmActors.Runtime.Memory;

namespace KvmActors.Runtime.Vcpu;

// The debugger's view of this vCPU: KVM_EXIT_DEBUG pauses it and tells the VM; register, memory and guest-debug
// requests are served here, on the vCPU's own thread, while it is out of KVM_RUN.
public sealed partial class VcpuActor
{
    /// <summary>A single step or a debug-register hit: stop running (as a pause does) and report it.</summary>
    private void DebugStopped(ulong dr6)
    {
        _progress.Paused = true;
        _progress.RunDeferred = true; // ResumeVcpu runs the guest on from here
        Context.Parent.Tell(new VcpuDebugStopped(_id, dr6, _vcpu.GetRegs().Rip));
    }

    private bool HandleDebug(object message)
    {
        switch (message)
        {
            case DebugReadState:
                Sender.Tell(new DebugStateRead(_vcpu.GetRegs(), _vcpu.GetSregs()));
                return true;
            case DebugWriteRegisters w:
                Sender.Tell(Try(() => _vcpu.SetRegs(w.Regs)));
                return true;
            case DebugConfigure c:
                Sender.Tell(Try(() => _vcpu.SetGuestDebug(c.Flags, c.Breakpoints, c.Dr7)));
                return true;
            case DebugReadMemory r:
                Sender.Tell(new DebugMemoryRead(ReadVirtual(r.Address, r.Length)));
                return true;
            case DebugWriteMemory w:
                Sender.Tell(WriteVirtual(w.Address, w.Bytes));
                return true;
            default:
                return false;
        }
    }

    private static DebugDone Try(Action action)
    {
        try { action(); return new DebugDone(); }
        catch (KvmException e) { return new DebugDone(e.Message); }
    }

    /// <summary>Guest-virtual to guest-physical, one page at a time (pages need not be contiguous physically).</summary>
    private byte[] ReadVirtual(ulong address, int length)
    {
        var result = new List<byte>(Math.Min(length, 4096));
        while (result.Count < length)
        {
            var va = address + (ulong)result.Count;
            var chunk = (int)Math.Min((ulong)(length - result.Count), GuestMemory.PageSize - va % GuestMemory.PageSize);
            if (!Translate(va, out var pa) || !_setup.Memory.IsBacked(pa, (ulong)chunk)) break;
            var bytes = new byte[chunk];
            _setup.Memory.Read(pa, bytes);
            result.AddRange(bytes);
        }
        return result.ToArray();
    }

    private DebugDone WriteVirtual(ulong address, byte[] data)
    {
        var done = 0;
        while (done < data.Length)
        {
            var va = address + (ulong)done;
            var chunk = (int)Math.Min((ulong)(data.Length - done), GuestMemory.PageSize - va % GuestMemory.PageSize);
            if (!Translate(va, out var pa) || !_setup.Memory.IsBacked(pa, (ulong)chunk))
                return new DebugDone($"0x{va:x} is not mapped to guest RAM");
            if (_setup.Memory.IsReadOnly(pa)) return new DebugDone($"0x{va:x} is ROM");
            _setup.Memory.Write(pa, data.AsSpan(done, chunk));
            done += chunk;
        }
        return new DebugDone();
    }

    private bool Translate(ulong linear, out ulong physical)
    {
        physical = 0;
        try
        {
            var t = _vcpu.Translate(linear);
            physical = t.Physical;
            return t.Valid;
        }
        catch (KvmException) { return false; }
    }
}

using Akka.Actor;
using Akka.Event;
using KvmActors.Runtime.Kvm;
using KvmActors.Runtime.Vm;

namespace KvmActors.Runtime.Vcpu;

// What the vCPU tells the VM about the guest: a failure (with registers and the faulting instruction) and,
// when it stops, its summary.
public sealed partial class VcpuActor
{
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
        KvmSregs? sregs = null;
        try
        {
            regs = _vcpu.GetRegs();
            sregs = _vcpu.GetSregs();
        }
        catch (KvmException e) { _log.Warning("vcpu {0}: final registers unavailable: {1}", _id, e.Message); }
        var byReason = new Dictionary<string, long>();
        for (var i = 0; i < _progress.ExitsByReason.Length; i++)
            if (_progress.ExitsByReason[i] > 0)
                byReason[Enum.IsDefined((KvmExitReason)i) ? ((KvmExitReason)i).ToString() : i.ToString()] = _progress.ExitsByReason[i];
        var summary = new VcpuSummary(_id, _threadName, _nativeThreadId, _progress.ThreadsSeen.Count, _progress.Exits, _progress.Halted, regs,
            byReason, new Dictionary<ushort, long>(_progress.ExitsByPort), _progress.Restarts, _progress.Unmapped.Total, sregs);
        Context.Parent.Tell(new VcpuStopped(summary));
        Context.Stop(Self);
    }
}

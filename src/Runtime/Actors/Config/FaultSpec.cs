namespace KvmActors.Runtime.Config;

/// <summary>What the VM does when a child actor fails: restart it, end the VM, or escalate to the VM's parent.</summary>
public enum SupervisionDirective { Restart, StopVm, Escalate }

/// <summary>Supervision of one kind of child (vCPU actors or device actors), from <c>guest.supervision</c>.</summary>
public sealed record SupervisionPolicy(SupervisionDirective Directive, int MaxRestarts, TimeSpan Within)
{
    public static readonly SupervisionPolicy Default = new(SupervisionDirective.Restart, 3, TimeSpan.FromSeconds(10));
}

/// <summary>
/// Faults injected into one vCPU actor (<c>guest.faults.vcpus."N"</c>). Counts are of the vCPU's exits and
/// survive actor restarts; a fault fires once at its count, or at every multiple of it with <c>repeat</c>.
/// </summary>
public sealed record VcpuFaults(long ThrowAfterExits, int KvmRunErrno, long KvmRunErrnoAfterExits, bool Repeat)
{
    public bool Fires(long count, long at) => at > 0 && (count == at || (Repeat && count % at == 0));
}




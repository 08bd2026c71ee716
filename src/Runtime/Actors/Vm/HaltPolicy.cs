using KvmActors.Sdk;

namespace KvmActors.Runtime.Vm;

/// <summary>
/// When HLT ends the VM (<c>guest.halt-policy</c>): <c>all-halted</c> once every vCPU has halted, <c>first-halt</c>
/// at the first one. Without an in-kernel irqchip nothing wakes a halted vCPU, so a halt is final for that vCPU.
/// A plain object of the VM actor: the VM tells it each <c>VcpuHalted</c> and ends when it says so.
/// </summary>
public sealed class HaltPolicy
{
    private readonly bool _firstHalt;
    private readonly int _vcpus;
    private readonly HashSet<int> _halted = new();

    private HaltPolicy(bool firstHalt, int vcpus)
    {
        _firstHalt = firstHalt;
        _vcpus = vcpus;
    }

    public static HaltPolicy For(string policy, int vcpus, string sourceFile) => policy switch
    {
        "all-halted" => new HaltPolicy(false, vcpus),
        "first-halt" => new HaltPolicy(true, vcpus),
        _ => throw new ConfigException(sourceFile, "guest.halt-policy", $"'{policy}' is not a policy (all-halted, first-halt)"),
    };

    public int HaltedCount => _halted.Count;

    /// <summary>vCPU <paramref name="vcpuId"/> halted: the VM's end, if the policy is met now.</summary>
    public RequestVmEnd? Halted(int vcpuId)
    {
        if (!_halted.Add(vcpuId)) return null;
        if (_firstHalt) return new RequestVmEnd(VmEndReason.Halted, $"vcpu {vcpuId} halted");
        return _halted.Count == _vcpus ? new RequestVmEnd(VmEndReason.Halted, $"all {_halted.Count} vCPU(s) halted") : null;
    }
}

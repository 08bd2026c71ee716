using Akka.Event;
using KvmActors.Runtime.Devices;
using KvmActors.Sdk;
using KvmActors.Runtime.Vcpu;
using KvmActors.Runtime.Vm;

namespace KvmActors.Devices.HaltController;

/// <summary>
/// Receives every HLT exit (<see cref="VcpuHalted"/>) and decides when the VM ends:
/// <c>all-halted</c> once every vCPU has halted, <c>first-halt</c> at the first one.
/// Without an in-kernel irqchip nothing can wake a halted vCPU, so a halt is final for that vCPU.
/// </summary>
[DeviceType("halt-controller")]
public sealed class HaltControllerDevice : DeviceActor
{
    private readonly string _policy;
    private readonly HashSet<int> _halted = new();

    public HaltControllerDevice(DeviceContext context) : base(context)
    {
        context.Options.RejectUnknown("policy");
        _policy = context.Options.GetString("policy", "all-halted");
        if (_policy is not ("all-halted" or "first-halt"))
            throw context.Options.Error("policy", $"'{_policy}' is not a halt policy (all-halted, first-halt)");
    }

    protected override void OnMessage(object message)
    {
        if (message is not VcpuHalted h)
        {
            Unhandled(message);
            return;
        }
        _halted.Add(h.VcpuId);
        Log.Debug("vcpu {0} halted ({1}/{2})", h.VcpuId, _halted.Count, Device.Machine.VcpuCount);
        if (_policy == "first-halt" || _halted.Count == Device.Machine.VcpuCount)
            EndVm(VmEndReason.Halted, _policy == "first-halt" ? $"vcpu {h.VcpuId} halted" : $"all {_halted.Count} vCPU(s) halted");
    }
}

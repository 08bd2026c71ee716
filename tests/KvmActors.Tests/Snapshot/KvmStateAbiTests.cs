using KvmActors.Runtime.Kvm;
using Xunit;

namespace KvmActors.Tests.Snapshot;

/// <summary>
/// The state-ioctl ABI against linux/kvm.h (x86-64): the numbers and struct sizes below were printed by a C program
/// including the header (_IOR/_IOW/_IOWR and sizeof), so a wrong size or direction here fails.
/// </summary>
public sealed unsafe class KvmStateAbiTests
{
    public static TheoryData<string, uint, uint> Requests => new()
    {
        { "KVM_GET_XSAVE", KvmIoctls.GetXsave, 0x9000aea4 }, { "KVM_SET_XSAVE", KvmIoctls.SetXsave, 0x5000aea5 },
        { "KVM_GET_XSAVE2", KvmIoctls.GetXsave2, 0x9000aecf },
        { "KVM_GET_FPU", KvmIoctls.GetFpu, 0x81a0ae8c }, { "KVM_SET_FPU", KvmIoctls.SetFpu, 0x41a0ae8d },
        { "KVM_GET_XCRS", KvmIoctls.GetXcrs, 0x8188aea6 }, { "KVM_SET_XCRS", KvmIoctls.SetXcrs, 0x4188aea7 },
        { "KVM_GET_DEBUGREGS", KvmIoctls.GetDebugRegs, 0x8080aea1 }, { "KVM_SET_DEBUGREGS", KvmIoctls.SetDebugRegs, 0x4080aea2 },
        { "KVM_GET_LAPIC", KvmIoctls.GetLapic, 0x8400ae8e }, { "KVM_SET_LAPIC", KvmIoctls.SetLapic, 0x4400ae8f },
        { "KVM_GET_MSR_INDEX_LIST", KvmIoctls.GetMsrIndexList, 0xc004ae02 },
        { "KVM_GET_MSRS", KvmIoctls.GetMsrs, 0xc008ae88 }, { "KVM_SET_MSRS", KvmIoctls.SetMsrs, 0x4008ae89 },
        { "KVM_GET_VCPU_EVENTS", KvmIoctls.GetVcpuEvents, 0x8040ae9f }, { "KVM_SET_VCPU_EVENTS", KvmIoctls.SetVcpuEvents, 0x4040aea0 },
        { "KVM_GET_CPUID2", KvmIoctls.GetCpuid2, 0xc008ae91 },
        { "KVM_GET_IRQCHIP", KvmIoctls.GetIrqchip, 0xc208ae62 }, { "KVM_SET_IRQCHIP", KvmIoctls.SetIrqchip, 0x8208ae63 },
        { "KVM_GET_PIT2", KvmIoctls.GetPit2, 0x8070ae9f }, { "KVM_SET_PIT2", KvmIoctls.SetPit2, 0x4070aea0 },
        { "KVM_GET_CLOCK", KvmIoctls.GetClock, 0x8030ae7c }, { "KVM_SET_CLOCK", KvmIoctls.SetClock, 0x4030ae7b },
        { "KVM_GET_DIRTY_LOG", KvmIoctls.GetDirtyLog, 0x4010ae42 },
    };

    [Theory]
    [MemberData(nameof(Requests))]
    public void Request_numbers_and_names_match_the_header(string name, uint request, uint header)
    {
        Assert.Equal(header, request);
        Assert.Equal(name, KvmIoctls.Name(request));
    }

    private static int Offset<T>(string field) => (int)System.Runtime.InteropServices.Marshal.OffsetOf<T>(field);

    [Fact]
    public void Struct_sizes_match_the_header()
    {
        Assert.Equal(416, sizeof(KvmFpu));
        Assert.Equal(392, sizeof(KvmXcrs));
        Assert.Equal(128, sizeof(KvmDebugRegs));
        Assert.Equal(1024, sizeof(KvmLapicState));
        Assert.Equal(16, sizeof(KvmMsrEntry));
        Assert.Equal(64, sizeof(KvmVcpuEvents));
        Assert.Equal(20, Offset<KvmVcpuEvents>(nameof(KvmVcpuEvents.Flags)));
        Assert.Equal(56, Offset<KvmVcpuEvents>(nameof(KvmVcpuEvents.ExceptionPayload)));
        Assert.Equal(16, sizeof(KvmPicState));
        Assert.Equal(216, sizeof(KvmIoapicState));
        Assert.Equal(520, sizeof(KvmIrqchip));
        Assert.Equal(24, sizeof(KvmPitChannelState));
        Assert.Equal(112, sizeof(KvmPitState2));
        Assert.Equal(72, Offset<KvmPitState2>(nameof(KvmPitState2.Flags)));
        Assert.Equal(48, sizeof(KvmClockData));
        Assert.Equal(16, sizeof(KvmDirtyLog));
    }
}

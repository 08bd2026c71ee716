using System.Runtime.InteropServices;

namespace KvmActors.Runtime.Kvm;

/// <summary>KVM_GUESTDBG_* control flags (linux/kvm.h; the x86 ones from asm/kvm.h).</summary>
[Flags]
public enum GuestDebugFlags : uint
{
    None = 0,
    Enable = 0x1,
    SingleStep = 0x2,
    UseSoftwareBreakpoints = 0x10000,
    UseHardwareBreakpoints = 0x20000,
}

/// <summary>What KVM_TRANSLATE says of a guest-virtual address in the vCPU's current mode.</summary>
public readonly record struct GuestTranslation(ulong Physical, bool Valid, bool Writeable);

/// <summary>
/// The debug ioctls of a vCPU: KVM_SET_GUEST_DEBUG (single step and hardware breakpoints; the host owns DR0–DR3
/// and DR7 while it is set) and KVM_TRANSLATE (guest-virtual → guest-physical through the guest's own tables).
/// </summary>
public sealed unsafe partial class KvmVcpu
{
    // struct kvm_guest_debug { __u32 control; __u32 pad; struct kvm_guest_debug_arch { __u64 debugreg[8]; } arch; }
    [StructLayout(LayoutKind.Sequential)]
    private struct KvmGuestDebug
    {
        public uint Control;
        public uint Pad;
        public fixed ulong DebugReg[8];
    }

    // struct kvm_translation { __u64 linear_address; __u64 physical_address; __u8 valid, writeable, usermode, pad[5]; }
    [StructLayout(LayoutKind.Sequential)]
    private struct KvmTranslation
    {
        public ulong LinearAddress;
        public ulong PhysicalAddress;
        public byte Valid, Writeable, UserMode, Pad0;
        public uint Pad1;
    }

    /// <summary>
    /// KVM_SET_GUEST_DEBUG. <paramref name="breakpoints"/> are linear addresses for DR0–DR3 (at most four) and
    /// <paramref name="dr7"/> enables them; with <see cref="GuestDebugFlags.None"/> the guest owns its debug registers again.
    /// </summary>
    public void SetGuestDebug(GuestDebugFlags control, ReadOnlySpan<ulong> breakpoints = default, ulong dr7 = 0)
    {
        if (breakpoints.Length > 4) throw new ArgumentException("at most four debug-register breakpoints", nameof(breakpoints));
        var dbg = new KvmGuestDebug { Control = (uint)control };
        for (var i = 0; i < breakpoints.Length; i++) dbg.DebugReg[i] = breakpoints[i];
        dbg.DebugReg[7] = dr7;
        KvmCalls.Ioctl(_fd, KvmIoctls.SetGuestDebug, &dbg, $"vcpu {Id}");
    }

    /// <summary>KVM_TRANSLATE of one guest-virtual (linear) address.</summary>
    public GuestTranslation Translate(ulong linear)
    {
        var t = new KvmTranslation { LinearAddress = linear };
        KvmCalls.Ioctl(_fd, KvmIoctls.Translate, &t, $"vcpu {Id}");
        return new GuestTranslation(t.PhysicalAddress, t.Valid != 0, t.Writeable != 0);
    }
}

using System.Buffers.Binary;

namespace KvmActors.Runtime.Kvm;

/// <summary>
/// The exit in a struct kvm_run, decoded where it lies: a zero-copy view over the run area's bytes with
/// one typed accessor per exit kind. Works over any buffer, so exit handling can be tested with fake exits
/// built in a byte array (<see cref="KvmRunLayout"/> gives the offsets), without /dev/kvm. The only place
/// that knows kvm_run's byte layout besides <see cref="KvmRunLayout"/>.
/// </summary>
public readonly ref struct KvmRunView
{
    private readonly Span<byte> _run;

    public KvmRunView(Span<byte> run)
    {
        if (run.Length < KvmRunLayout.MinimumSize)
            throw new ArgumentException($"a kvm_run area is at least {KvmRunLayout.MinimumSize} bytes (got {run.Length})", nameof(run));
        _run = run;
    }

    /// <summary>The whole run area (the IO data lives in it, at <see cref="IoExit.DataOffset"/>).</summary>
    public Span<byte> Bytes => _run;

    public KvmExitReason Reason => (KvmExitReason)BinaryPrimitives.ReadUInt32LittleEndian(_run[KvmRunLayout.ExitReason..]);

    /// <summary>KVM_EXIT_IO (port I/O, possibly a rep-string of <see cref="IoExit.Count"/> items).</summary>
    public IoExit Io => new(_run);

    /// <summary>KVM_EXIT_MMIO.</summary>
    public MmioExit Mmio => new(_run);

    /// <summary>KVM_EXIT_FAIL_ENTRY: hardware_entry_failure_reason.</summary>
    public ulong FailEntryReason => U64(KvmRunLayout.FailEntryReason);

    /// <summary>KVM_EXIT_FAIL_ENTRY: the host CPU the entry failed on.</summary>
    public uint FailEntryCpu => U32(KvmRunLayout.FailEntryCpu);

    /// <summary>KVM_EXIT_INTERNAL_ERROR.</summary>
    public InternalErrorExit InternalError => new(_run);

    /// <summary>KVM_EXIT_UNKNOWN: hardware_exit_reason.</summary>
    public ulong HardwareExitReason => U64(KvmRunLayout.HwExitReason);

    /// <summary>KVM_EXIT_SYSTEM_EVENT: the event type (KVM_SYSTEM_EVENT_SHUTDOWN = 1, RESET = 2, CRASH = 3, ...).</summary>
    public uint SystemEventType => U32(KvmRunLayout.SystemEventType);
    /// <summary>KVM_EXIT_IOAPIC_EOI: the vector (struct { __u8 vector; } eoi, at the union).</summary>
    public byte EoiVector => _run[KvmRunLayout.Union];

    /// <summary>KVM_EXIT_DEBUG (struct kvm_debug_exit_arch on x86).</summary>
    public DebugExit Debug => new(_run);

    private uint U32(int offset) => BinaryPrimitives.ReadUInt32LittleEndian(_run[offset..]);
    private ulong U64(int offset) => BinaryPrimitives.ReadUInt64LittleEndian(_run[offset..]);

    /// <summary>Port I/O: the data of the <see cref="Count"/> items, <see cref="Size"/> bytes each, lies in the run area.</summary>
    public readonly ref struct IoExit
    {
        private readonly Span<byte> _run;
        internal IoExit(Span<byte> run) => _run = run;

        public bool IsOut => _run[KvmRunLayout.IoDirection] == KvmRunLayout.IoOut;
        public bool IsIn => !IsOut;
        public int Size => _run[KvmRunLayout.IoSize];
        public ushort Port => BinaryPrimitives.ReadUInt16LittleEndian(_run[KvmRunLayout.IoPort..]);
        public uint Count => BinaryPrimitives.ReadUInt32LittleEndian(_run[KvmRunLayout.IoCount..]);
        public int DataOffset => (int)BinaryPrimitives.ReadUInt64LittleEndian(_run[KvmRunLayout.IoDataOffset..]);

        /// <summary>Every item's bytes (Size × Count).</summary>
        public Span<byte> Data => _run.Slice(DataOffset, Size * (int)Count);

        /// <summary>The bytes of item <paramref name="index"/>.</summary>
        public Span<byte> Item(uint index) => _run.Slice(DataOffset + (int)index * Size, Size);
    }

    /// <summary>MMIO: at most 8 bytes at <see cref="Address"/>, the data inline in kvm_run.</summary>
    public readonly ref struct MmioExit
    {
        private readonly Span<byte> _run;
        internal MmioExit(Span<byte> run) => _run = run;

        public ulong Address => BinaryPrimitives.ReadUInt64LittleEndian(_run[KvmRunLayout.MmioPhysAddr..]);
        public int Length => (int)Math.Min(8u, BinaryPrimitives.ReadUInt32LittleEndian(_run[KvmRunLayout.MmioLen..]));
        public bool IsWrite => _run[KvmRunLayout.MmioIsWrite] != 0;

        /// <summary>The <see cref="Length"/> data bytes (written by the guest, or to be filled for a read).</summary>
        public Span<byte> Data => _run.Slice(KvmRunLayout.MmioData, Length);
    }

    /// <summary>KVM_EXIT_INTERNAL_ERROR: a suberror (1: emulation failed) and up to 16 words of data.</summary>
    public readonly ref struct InternalErrorExit
    {
        private readonly Span<byte> _run;
        internal InternalErrorExit(Span<byte> run) => _run = run;

        public const uint EmulationFailure = 1;

        public uint Suberror => BinaryPrimitives.ReadUInt32LittleEndian(_run[KvmRunLayout.InternalSuberror..]);
        public int DataCount => (int)Math.Min(16u, BinaryPrimitives.ReadUInt32LittleEndian(_run[KvmRunLayout.InternalNdata..]));
        public ulong Data(int index) => (uint)index < (uint)DataCount
            ? BinaryPrimitives.ReadUInt64LittleEndian(_run[(KvmRunLayout.InternalData + 8 * index)..])
            : throw new ArgumentOutOfRangeException(nameof(index));
    }

    /// <summary>KVM_EXIT_DEBUG: struct kvm_debug_exit_arch { __u32 exception; __u32 pad; __u64 pc, dr6, dr7; }.</summary>
    public readonly ref struct DebugExit
    {
        private readonly Span<byte> _run;
        internal DebugExit(Span<byte> run) => _run = run;

        public uint Exception => BinaryPrimitives.ReadUInt32LittleEndian(_run[KvmRunLayout.DebugException..]);
        public ulong Pc => BinaryPrimitives.ReadUInt64LittleEndian(_run[KvmRunLayout.DebugPc..]);
        public ulong Dr6 => BinaryPrimitives.ReadUInt64LittleEndian(_run[KvmRunLayout.DebugDr6..]);
        public ulong Dr7 => BinaryPrimitives.ReadUInt64LittleEndian(_run[KvmRunLayout.DebugDr7..]);
    }
}

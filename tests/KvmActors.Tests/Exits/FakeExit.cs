using System.Buffers.Binary;
using Akka.Actor;
using KvmActors.Runtime.Kvm;
using KvmActors.Runtime.Vcpu;

namespace KvmActors.Tests.Exits;

/// <summary>A kvm_run area in a byte array, filled as KVM would fill it for one exit (offsets: KvmRunLayout).</summary>
internal sealed class FakeExit
{
    public const int IoDataOffset = 4096; // where KVM puts port I/O data: the page after the header
    public byte[] Bytes { get; } = new byte[8192];
    public KvmRunView View => new(Bytes);

    private FakeExit(KvmExitReason reason) => U32(KvmRunLayout.ExitReason, (uint)reason);

    public static FakeExit Of(KvmExitReason reason) => new(reason);

    public static FakeExit Out(ushort port, int size, params byte[] data) => Io(KvmRunLayout.IoOut, port, size, (uint)(data.Length / size), data);

    public static FakeExit In(ushort port, int size, uint count = 1) => Io(KvmRunLayout.IoIn, port, size, count, new byte[size * count]);

    private static FakeExit Io(byte direction, ushort port, int size, uint count, byte[] data)
    {
        var e = new FakeExit(KvmExitReason.Io);
        e.Bytes[KvmRunLayout.IoDirection] = direction;
        e.Bytes[KvmRunLayout.IoSize] = (byte)size;
        BinaryPrimitives.WriteUInt16LittleEndian(e.Bytes.AsSpan(KvmRunLayout.IoPort), port);
        e.U32(KvmRunLayout.IoCount, count);
        e.U64(KvmRunLayout.IoDataOffset, IoDataOffset);
        data.CopyTo(e.Bytes, IoDataOffset);
        return e;
    }

    public static FakeExit Mmio(ulong address, int length, bool isWrite, ulong value = 0)
    {
        var e = new FakeExit(KvmExitReason.Mmio);
        e.U64(KvmRunLayout.MmioPhysAddr, address);
        e.U64(KvmRunLayout.MmioData, value);
        e.U32(KvmRunLayout.MmioLen, (uint)length);
        e.Bytes[KvmRunLayout.MmioIsWrite] = isWrite ? (byte)1 : (byte)0;
        return e;
    }

    public FakeExit U32(int offset, uint value)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(Bytes.AsSpan(offset), value);
        return this;
    }

    public FakeExit U64(int offset, ulong value)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(Bytes.AsSpan(offset), value);
        return this;
    }

    /// <summary>The IO data bytes (Size × Count at the data offset).</summary>
    public byte[] IoData(int length) => Bytes.AsSpan(IoDataOffset, length).ToArray();

    public ulong MmioData => BinaryPrimitives.ReadUInt64LittleEndian(Bytes.AsSpan(KvmRunLayout.MmioData));
}

/// <summary>What a handler asked its vCPU to do, recorded.</summary>
internal sealed class RecordingActions : IVcpuExitActions
{
    public List<(IActorRef Device, object Access)> Sent { get; } = new();
    public List<UnmappedAccess> Unmapped { get; } = new();

    public void Send(IActorRef device, object access) => Sent.Add((device, access));
    public void ReportUnmapped(UnmappedAccess access) => Unmapped.Add(access);
}

using KvmActors.Sdk;

namespace KvmActors.Tests.Devices;

/// <summary>RAM from 0 up to a size, as a bus master sees it: for the models that walk tables or DMA (VT-d, edu).</summary>
internal sealed class FakePhysicalMemory(int size) : IPhysicalMemory
{
    public readonly byte[] Bytes = new byte[size];

    public bool IsBacked(ulong address, ulong length) => address + length <= (ulong)Bytes.Length && address + length >= address;
    public void Read(ulong address, Span<byte> into) => Bytes.AsSpan((int)address, into.Length).CopyTo(into);
    public void Write(ulong address, ReadOnlySpan<byte> from) => from.CopyTo(Bytes.AsSpan((int)address));

    public void Q(ulong address, ulong value) => BitConverter.TryWriteBytes(Bytes.AsSpan((int)address), value);
    public uint D(ulong address) => BitConverter.ToUInt32(Bytes, (int)address);
}

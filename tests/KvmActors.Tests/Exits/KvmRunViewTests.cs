using Xunit;
using KvmActors.Runtime.Kvm;

namespace KvmActors.Tests.Exits;

/// <summary>The typed exit over a byte buffer: each accessor reads the field kvm_run has at that place.</summary>
public sealed class KvmRunViewTests
{
    [Fact]
    public void The_io_view_decodes_direction_size_port_count_and_the_items()
    {
        var exit = FakeExit.Out(0x3f8, 2, 0x01, 0x02, 0x03, 0x04);
        var io = exit.View.Io;

        Assert.Equal(KvmExitReason.Io, exit.View.Reason);
        Assert.True(io.IsOut);
        Assert.Equal((2, (ushort)0x3f8, 2u, FakeExit.IoDataOffset), (io.Size, io.Port, io.Count, io.DataOffset));
        Assert.Equal([0x03, 0x04], io.Item(1).ToArray());
        Assert.Equal(4, io.Data.Length);
    }

    [Fact]
    public void The_mmio_view_caps_the_length_at_eight_bytes()
    {
        var exit = FakeExit.Mmio(0xfee0_0000, 4, isWrite: true, 0xaabbccdd);
        var mmio = exit.View.Mmio;
        Assert.Equal((0xfee0_0000UL, 4, true), (mmio.Address, mmio.Length, mmio.IsWrite));
        Assert.Equal([0xdd, 0xcc, 0xbb, 0xaa], mmio.Data.ToArray());

        exit.U32(KvmRunLayout.MmioLen, 4096);
        Assert.Equal(8, exit.View.Mmio.Length);
    }

    [Fact]
    public void The_debug_and_internal_error_views_decode_their_fields()
    {
        var exit = FakeExit.Of(KvmExitReason.Debug)
            .U32(KvmRunLayout.DebugException, 1).U64(KvmRunLayout.DebugPc, 0x1004)
            .U64(KvmRunLayout.DebugDr6, 0xffff0ff1).U64(KvmRunLayout.DebugDr7, 0x401);
        var debug = exit.View.Debug;
        Assert.Equal((1u, 0x1004UL, 0xffff0ff1UL, 0x401UL), (debug.Exception, debug.Pc, debug.Dr6, debug.Dr7));

        var internalError = FakeExit.Of(KvmExitReason.InternalError)
            .U32(KvmRunLayout.InternalSuberror, 1).U32(KvmRunLayout.InternalNdata, 2).U64(KvmRunLayout.InternalData + 8, 0x77);
        Assert.Equal((1u, 2, 0x77UL), (internalError.View.InternalError.Suberror, internalError.View.InternalError.DataCount, internalError.View.InternalError.Data(1)));
    }

    [Fact]
    public void A_buffer_shorter_than_the_run_header_and_union_is_refused()
    {
        Assert.Throws<ArgumentException>(() => new KvmRunView(new byte[64]));
    }
}

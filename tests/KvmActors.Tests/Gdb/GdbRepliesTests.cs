using System.Text;
using KvmActors.Gdb;
using Xunit;

namespace KvmActors.Tests.Gdb;

public sealed class GdbRepliesTests
{
    [Fact]
    public void Plain_replies()
    {
        Assert.Equal("OK", GdbReplies.Ok);
        Assert.Equal("E01", GdbReplies.Error(1));
        Assert.Equal("Eff", GdbReplies.Error(0xff));
        Assert.Equal("S05", GdbReplies.Signal(GdbSignals.Trap));
    }

    [Fact]
    public void Stop_replies_name_the_reason_and_the_thread()
    {
        Assert.Equal("T05thread:1;", GdbReplies.Stop(GdbStopEvent.Stepped(1)));
        Assert.Equal("T02thread:2;", GdbReplies.Stop(GdbStopEvent.Interrupted(2)));
        Assert.Equal("T05swbreak:;thread:1;", GdbReplies.Stop(GdbStopEvent.SoftwareBreakpoint(1)));
        Assert.Equal("T05hwbreak:;thread:10;", GdbReplies.Stop(GdbStopEvent.HardwareBreakpoint(16)));
        Assert.Equal("T05watch:2000;thread:1;", GdbReplies.Stop(GdbStopEvent.Watchpoint(1, GdbBreakpointType.WriteWatch, 0x2000)));
        Assert.Equal("T05rwatch:2000;thread:1;", GdbReplies.Stop(GdbStopEvent.Watchpoint(1, GdbBreakpointType.ReadWatch, 0x2000)));
        Assert.Equal("T05awatch:ffff800000002000;thread:3;",
            GdbReplies.Stop(GdbStopEvent.Watchpoint(3, GdbBreakpointType.AccessWatch, 0xffff_8000_0000_2000)));
    }

    [Fact]
    public void Swbreak_and_hwbreak_are_left_out_for_a_gdb_that_did_not_announce_them()
    {
        Assert.Equal("T05thread:1;", GdbReplies.Stop(GdbStopEvent.SoftwareBreakpoint(1), reportSwBreak: false));
        Assert.Equal("T05thread:1;", GdbReplies.Stop(GdbStopEvent.HardwareBreakpoint(1), reportHwBreak: false));
    }

    [Fact]
    public void Exit_and_termination_replies()
    {
        Assert.Equal("W00", GdbReplies.Stop(GdbStopEvent.Exited(0)));
        Assert.Equal("W03", GdbReplies.Stop(GdbStopEvent.Exited(3)));
        Assert.Equal("X09", GdbReplies.Stop(GdbStopEvent.Terminated(GdbSignals.Kill)));
    }

    [Fact]
    public void Thread_lists()
    {
        Assert.Equal("m1,2,a", GdbReplies.ThreadList([1, 2, 10]));
        Assert.Equal("l", GdbReplies.ThreadList([]));
        Assert.Equal("l", GdbReplies.EndOfList);
    }

    [Fact]
    public void Xfer_chunks_say_m_while_more_follows_and_l_for_the_last_piece()
    {
        var doc = Encoding.ASCII.GetBytes("0123456789");
        Assert.Equal("m0123", Encoding.ASCII.GetString(GdbReplies.XferChunk(doc, 0, 4)));
        Assert.Equal("m4567", Encoding.ASCII.GetString(GdbReplies.XferChunk(doc, 4, 4)));
        Assert.Equal("l89", Encoding.ASCII.GetString(GdbReplies.XferChunk(doc, 8, 4)));
        Assert.Equal("l0123456789", Encoding.ASCII.GetString(GdbReplies.XferChunk(doc, 0, 10)));
        Assert.Equal("l", Encoding.ASCII.GetString(GdbReplies.XferChunk(doc, 10, 4)));
        Assert.Equal("l", Encoding.ASCII.GetString(GdbReplies.XferChunk(doc, 99, 4)));
    }

    [Fact]
    public void Reading_a_document_chunk_by_chunk_gives_it_back_whole()
    {
        var doc = X86RegisterLayout.For(X86Mode.Long64).TargetXmlBytes;
        var got = new List<byte>();
        for (var offset = 0; ; )
        {
            var chunk = GdbReplies.XferChunk(doc, offset, 100);
            got.AddRange(chunk.Skip(1));
            offset += chunk.Length - 1;
            if (chunk[0] == 'l') break;
            Assert.Equal((byte)'m', chunk[0]);
        }
        Assert.Equal(doc, got.ToArray());
    }

    [Fact]
    public void Thread_extra_info_is_hex_text()
    {
        Assert.Equal("764350552030", GdbReplies.HexText("vCPU 0"));
    }
}

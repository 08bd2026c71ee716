using System.Text;
using KvmActors.Gdb;
using Xunit;

namespace KvmActors.Tests.Gdb;

public sealed class GdbCommandParserTests
{
    private static GdbCommand P(string s) => GdbCommandParser.Parse(s);

    [Fact]
    public void QSupported_parses_the_features_gdb_13_sends()
    {
        var q = Assert.IsType<QuerySupported>(P(
            "qSupported:multiprocess+;swbreak+;hwbreak+;qRelocInsn+;fork-events+;vfork-events+;exec-events+;" +
            "vContSupported+;QThreadEvents+;no-resumed+;memory-tagging+;xmlRegisters=i386"));
        Assert.Equal(12, q.Features.Count);
        Assert.Equal(new GdbFeature("swbreak", '+'), q.Find("swbreak"));
        Assert.True(q.Find("hwbreak")!.Supported);
        Assert.Equal(new GdbFeature("xmlRegisters", '=', "i386"), q.Find("xmlRegisters"));
        Assert.Null(q.Find("nonexistent"));
    }

    [Fact]
    public void QSupported_keeps_minus_and_query_states_and_takes_no_features()
    {
        var q = Assert.IsType<QuerySupported>(P("qSupported:multiprocess-;foo?"));
        Assert.False(q.Find("multiprocess")!.Supported);
        Assert.Equal('?', q.Find("foo")!.State);
        Assert.Empty(Assert.IsType<QuerySupported>(P("qSupported")).Features);
    }

    [Fact]
    public void Simple_commands()
    {
        Assert.IsType<QueryHaltReason>(P("?"));
        Assert.IsType<ReadAllRegisters>(P("g"));
        Assert.IsType<QueryVCont>(P("vCont?"));
        Assert.IsType<ThreadInfoFirst>(P("qfThreadInfo"));
        Assert.IsType<ThreadInfoNext>(P("qsThreadInfo"));
        Assert.IsType<QueryCurrentThread>(P("qC"));
        Assert.IsType<StartNoAckMode>(P("QStartNoAckMode"));
        Assert.IsType<Kill>(P("k"));
        Assert.IsType<MustReplyEmpty>(P("vMustReplyEmpty"));
        Assert.Equal(new QueryAttached(null), P("qAttached"));
        Assert.Equal(new QueryAttached(0x2a), P("qAttached:2a"));
        Assert.Equal(new Detach(null), P("D"));
        Assert.Equal(new Detach(1), P("D;1"));
        Assert.Equal(new VKill(null), P("vKill"));
        Assert.Equal(new VKill(0x1f), P("vKill;1f"));
    }

    [Fact]
    public void Register_packets()
    {
        Assert.Equal(new byte[] { 0x01, 0xab, 0 }, Assert.IsType<WriteAllRegisters>(P("G01ABxx")).Data);
        Assert.Equal(new ReadRegister(0x10), P("p10"));
        var w = Assert.IsType<WriteRegister>(P("P10=0010000000000000"));
        Assert.Equal(0x10, w.Number);
        Assert.Equal(new byte[] { 0, 0x10, 0, 0, 0, 0, 0, 0 }, w.Value);
    }

    [Fact]
    public void Memory_packets()
    {
        Assert.Equal(new ReadMemory(0xffff_ffff_8000_1000, 0x40), P("mffffffff80001000,40"));
        var m = Assert.IsType<WriteMemory>(P("M2000,2:abCD"));
        Assert.Equal((0x2000UL, false), (m.Address, m.Binary));
        Assert.Equal(new byte[] { 0xab, 0xcd }, m.Data);
    }

    [Fact]
    public void X_takes_the_already_unescaped_binary_data_as_is_including_colons_and_hashes()
    {
        var x = Assert.IsType<WriteMemory>(GdbCommandParser.Parse(Encoding.Latin1.GetBytes("X3000,4:#:\0\xff")));
        Assert.Equal((0x3000UL, true), (x.Address, x.Binary));
        Assert.Equal(new byte[] { (byte)'#', (byte)':', 0, 0xff }, x.Data);
        Assert.Empty(Assert.IsType<WriteMemory>(P("X1000,0:")).Data); // gdb's probe for X support
    }

    [Theory]
    [InlineData("M2000,3:abcd")] // length disagrees with the data
    [InlineData("X2000,1:")]
    [InlineData("m1000")] // no length
    [InlineData("mzz,4")]
    [InlineData("m1,ffffffffffffffffff")] // does not fit
    [InlineData("m1,100000000")] // length over int
    [InlineData("p")]
    [InlineData("P10")]
    [InlineData("G0")] // odd hex
    [InlineData("Hx1")]
    [InlineData("Z0,1000")]
    [InlineData("vCont;x")]
    [InlineData("vCont;")]
    [InlineData("D1")]
    [InlineData("qXfer:features:read:target.xml")]
    public void Bad_arguments_of_known_packets_are_malformed_not_exceptions(string text)
    {
        Assert.IsType<MalformedCommand>(P(text));
    }

    [Fact]
    public void Continue_and_step_with_and_without_an_address()
    {
        Assert.Equal(new Continue(null), P("c"));
        Assert.Equal(new Continue(0x1000), P("c1000"));
        Assert.Equal(new Step(null), P("s"));
        Assert.Equal(new Step(0x7c00), P("s7c00"));
    }

    [Fact]
    public void VCont_actions_keep_their_order_threads_and_signals()
    {
        var v = Assert.IsType<VCont>(P("vCont;s:1;c"));
        Assert.Equal([new GdbResumeAction(GdbResumeKind.Step, 1), new GdbResumeAction(GdbResumeKind.Continue, -1)], v.Actions);
        Assert.Equal([new GdbResumeAction(GdbResumeKind.Continue, -1)], Assert.IsType<VCont>(P("vCont;c:-1")).Actions);
        Assert.Equal([new GdbResumeAction(GdbResumeKind.Continue, 2, null, 5), new GdbResumeAction(GdbResumeKind.Stop, 0xa)],
            Assert.IsType<VCont>(P("vCont;C05:2;t:a")).Actions);
        Assert.Equal([new GdbResumeAction(GdbResumeKind.Step, 3, null, 2)], Assert.IsType<VCont>(P("vCont;S02:3")).Actions);
    }

    [Fact]
    public void The_leftmost_vcont_action_that_names_a_thread_applies_to_it()
    {
        var actions = Assert.IsType<VCont>(P("vCont;s:2;c")).Actions;
        Assert.Equal(GdbResumeKind.Step, GdbResume.ActionFor(actions, 2)!.Kind);
        Assert.Equal(GdbResumeKind.Continue, GdbResume.ActionFor(actions, 1)!.Kind);
        Assert.Null(GdbResume.ActionFor(Assert.IsType<VCont>(P("vCont;s:2")).Actions, 1));
    }

    [Fact]
    public void Breakpoint_and_watchpoint_packets()
    {
        Assert.Equal(new InsertBreakpoint(GdbBreakpointType.Software, 0x1010, 1), P("Z0,1010,1"));
        Assert.Equal(new RemoveBreakpoint(GdbBreakpointType.Hardware, 0x1010, 1), P("z1,1010,1"));
        Assert.Equal(new InsertBreakpoint(GdbBreakpointType.WriteWatch, 0x2000, 4), P("Z2,2000,4"));
        Assert.Equal(new InsertBreakpoint(GdbBreakpointType.ReadWatch, 0x2000, 8), P("Z3,2000,8"));
        Assert.Equal(new RemoveBreakpoint(GdbBreakpointType.AccessWatch, 0x2000, 2), P("z4,2000,2"));
        // Conditions after ';' are not supported; the kind is still read.
        Assert.Equal(new InsertBreakpoint(GdbBreakpointType.Software, 0x1010, 1), P("Z0,1010,1;X3,220027"));
        Assert.IsType<UnknownCommand>(P("Z5,1000,1"));
    }

    [Fact]
    public void Thread_packets()
    {
        Assert.Equal(new SetThread('g', 1), P("Hg1"));
        Assert.Equal(new SetThread('c', -1), P("Hc-1"));
        Assert.Equal(new SetThread('g', 0), P("Hg0"));
        Assert.Equal(new ThreadAlive(0x1b), P("T1b"));
        Assert.Equal(new QueryThreadExtraInfo(2), P("qThreadExtraInfo,2"));
    }

    [Fact]
    public void QXfer_features_read_gives_annex_offset_and_length()
    {
        Assert.Equal(new ReadFeatures("target.xml", 0, 0xffb), P("qXfer:features:read:target.xml:0,ffb"));
        Assert.Equal(new ReadFeatures("i386-core.xml", 0x7fe, 0x100), P("qXfer:features:read:i386-core.xml:7fe,100"));
    }

    [Theory]
    [InlineData("")]
    [InlineData("qTStatus")]
    [InlineData("qOffsets")]
    [InlineData("vFile:open:")]
    [InlineData("QNonStop:1")]
    [InlineData("!")]
    public void Unknown_packets_are_unknown(string text)
    {
        Assert.IsType<UnknownCommand>(P(text));
    }
}

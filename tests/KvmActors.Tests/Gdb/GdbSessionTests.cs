using System.Net;
using System.Net.Sockets;
using System.Text;
using KvmActors.Gdb;
using Xunit;

namespace KvmActors.Tests.Gdb;

/// <summary>The session driven byte by byte over loopback TCP, as a scripted gdb would.</summary>
public sealed class GdbSessionTests : IAsyncLifetime
{
    private readonly FakeGdbTarget _target = new();
    private readonly CancellationTokenSource _cts = new(TimeSpan.FromSeconds(20));
    private TcpClient _client = null!;
    private NetworkStream _wire = null!;
    private Task _session = null!;
    private readonly RspDecoder _decoder = new();
    private readonly Queue<RspEvent> _events = new();

    public async Task InitializeAsync()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        // NoDelay on both ends, as a real stub listener should set it: the protocol is small
        // request/reply packets, which Nagle plus delayed acks would hold for tens of ms each.
        _client = new TcpClient();
        await _client.ConnectAsync(IPAddress.Loopback, ((IPEndPoint)listener.LocalEndpoint).Port, _cts.Token);
        _client.NoDelay = true;
        var server = await listener.AcceptTcpClientAsync(_cts.Token);
        listener.Stop();
        server.NoDelay = true;
        _wire = _client.GetStream();
        _session = Task.Run(async () =>
        {
            using (server)
            await using (var stream = server.GetStream())
                await new GdbSession(stream, _target).RunAsync(_cts.Token);
        });
    }

    public async Task DisposeAsync()
    {
        _client.Dispose();
        try { await _session.WaitAsync(TimeSpan.FromSeconds(5)); } catch { /* a test that failed left it running */ }
        _cts.Dispose();
    }

    private Task SendRawAsync(string bytes) => _wire.WriteAsync(Encoding.Latin1.GetBytes(bytes), _cts.Token).AsTask();

    private Task SendAsync(string payload) => _wire.WriteAsync(RspEncoder.Frame(payload), _cts.Token).AsTask();

    private async Task<RspEvent> NextAsync()
    {
        var buffer = new byte[4096];
        while (_events.Count == 0)
        {
            var n = await _wire.ReadAsync(buffer, _cts.Token);
            if (n == 0) throw new EndOfStreamException("session closed the connection");
            foreach (var e in _decoder.Feed(buffer.AsSpan(0, n))) _events.Enqueue(e);
        }
        return _events.Dequeue();
    }

    /// <summary>Sends a packet, expects the '+' for it, returns the reply and acks it.</summary>
    private async Task<string> AskAsync(string payload)
    {
        await SendAsync(payload);
        Assert.IsType<RspAck>(await NextAsync());
        return await ReplyAsync();
    }

    private async Task<string> ReplyAsync(bool ack = true)
    {
        var reply = Assert.IsType<RspPacket>(await NextAsync()).Text;
        if (ack) await SendRawAsync("+");
        return reply;
    }

    [Fact]
    public async Task QSupported_advertises_packet_size_xfer_and_no_ack_mode()
    {
        var reply = await AskAsync("qSupported:swbreak+;hwbreak+;xmlRegisters=i386");
        Assert.Contains("PacketSize=4000", reply.Split(';'));
        Assert.Contains("qXfer:features:read+", reply.Split(';'));
        Assert.Contains("QStartNoAckMode+", reply.Split(';'));
    }

    [Fact]
    public async Task A_bad_checksum_is_answered_with_a_nak_and_the_retry_is_answered()
    {
        await SendRawAsync("$?#00");
        Assert.IsType<RspNak>(await NextAsync());
        Assert.Equal("T02thread:1;", await AskAsync("?"));
    }

    [Fact]
    public async Task A_nak_from_gdb_makes_the_session_send_its_last_reply_again()
    {
        await SendAsync("qC");
        Assert.IsType<RspAck>(await NextAsync());
        Assert.Equal("QC1", await ReplyAsync(ack: false));
        await SendRawAsync("-");
        Assert.Equal("QC1", await ReplyAsync());
    }

    [Fact]
    public async Task After_QStartNoAckMode_is_acked_and_answered_nothing_more_is_acked()
    {
        Assert.Equal("OK", await AskAsync("QStartNoAckMode"));
        await SendAsync("qC");
        Assert.Equal("QC1", Assert.IsType<RspPacket>(await NextAsync()).Text);
        // And a bad packet is dropped silently: the next reply is the next packet's.
        await SendRawAsync("$qC#00");
        await SendAsync("qfThreadInfo");
        Assert.Equal("m1,2", Assert.IsType<RspPacket>(await NextAsync()).Text);
    }

    [Fact]
    public async Task An_oversized_packet_is_refused_and_the_session_carries_on()
    {
        await SendAsync("M0,8000:" + new string('0', 70_000));
        Assert.IsType<RspNak>(await NextAsync());
        Assert.Equal("QC1", await AskAsync("qC"));
        Assert.DoesNotContain(_target.Calls, c => c.StartsWith("write-memory"));
    }

    [Fact]
    public async Task Ctrl_C_while_running_interrupts_the_target_and_the_stop_names_the_thread()
    {
        await SendAsync("vCont;c");
        Assert.IsType<RspAck>(await NextAsync());
        await _target.RunningForever.Task.WaitAsync(_cts.Token);
        await SendRawAsync("\x03");
        Assert.Equal("T02thread:2;", await ReplyAsync());
        Assert.Equal(1, _target.Interrupts);
        // The stopped thread is now the current one.
        Assert.Equal("QC2", await AskAsync("qC"));
    }

    [Fact]
    public async Task A_breakpoint_hit_is_reported_as_swbreak_to_a_gdb_that_knows_it()
    {
        await AskAsync("qSupported:swbreak+");
        Assert.Equal("OK", await AskAsync("Z0,1010,1"));
        Assert.Equal("T05swbreak:;thread:1;", await AskAsync("c"));
        Assert.Equal(0x1010UL, _target.Registers[1].Rip);
        Assert.Equal("OK", await AskAsync("z0,1010,1"));
        Assert.Empty(_target.Breakpoints);
    }

    [Fact]
    public async Task Without_swbreak_in_qSupported_the_stop_is_a_plain_SIGTRAP()
    {
        await AskAsync("Z0,1010,1");
        Assert.Equal("T05thread:1;", await AskAsync("c"));
    }

    [Fact]
    public async Task Step_steps_the_Hc_thread_and_reports_it()
    {
        Assert.Equal("OK", await AskAsync("Hc2"));
        Assert.Equal("T05thread:2;", await AskAsync("s"));
        Assert.Equal(0x1001UL, _target.Registers[2].Rip);
        Assert.Equal(0x1000UL, _target.Registers[1].Rip);
        Assert.Contains("resume Step:2", _target.Calls);
    }

    [Fact]
    public async Task C_with_an_address_sets_the_pc_first()
    {
        await AskAsync("qSupported:hwbreak+");
        await AskAsync("Z1,1800,1"); // where the fake would stop from the old pc (0x1000)
        await AskAsync("Z1,3000,1");
        Assert.Equal("T05hwbreak:;thread:1;", await AskAsync("c2000"));
        Assert.Equal(0x3000UL, _target.Registers[1].Rip);
    }

    [Fact]
    public async Task Hg_selects_the_thread_whose_registers_g_reads_and_unknown_threads_are_refused()
    {
        _target.Registers[2] = _target.Registers[2] with { Rax = 0xabcdef };
        Assert.Equal("OK", await AskAsync("Hg2"));
        Assert.StartsWith("efcdab0000000000", await AskAsync("g"));
        Assert.Equal("E01", await AskAsync("Hg9"));
        Assert.Equal("OK", await AskAsync("Hg0"));
        Assert.Equal("QC2", await AskAsync("qC"));
    }

    [Fact]
    public async Task G_and_P_write_the_selected_threads_registers()
    {
        var layout = X86RegisterLayout.For(X86Mode.Long64);
        var g = layout.SerializeG(new X86RegisterFile { Rbx = 0x77, Rip = 0x4000 });
        Assert.Equal("OK", await AskAsync("G" + g));
        Assert.Equal((0x77UL, 0x4000UL), (_target.Registers[1].Rbx, _target.Registers[1].Rip));
        Assert.Equal("OK", await AskAsync("P10=0050000000000000"));
        Assert.Equal(0x5000UL, _target.Registers[1].Rip);
        Assert.Equal("0050000000000000", await AskAsync("p10"));
        Assert.Equal("E01", await AskAsync("P10=00"));
        Assert.Equal("E01", await AskAsync("p999"));
    }

    [Fact]
    public async Task Memory_reads_and_writes_in_hex_and_binary()
    {
        new byte[] { 1, 2, 3 }.CopyTo(_target.Memory, 0x1000);
        Assert.Equal("010203", await AskAsync("m1000,3"));
        Assert.Equal("OK", await AskAsync("M2000,2:beef"));
        Assert.Equal(new byte[] { 0xbe, 0xef }, _target.Memory[0x2000..0x2002]);
        // X data with bytes that need escaping: the frame escapes '#', '$', '}' and '*'.
        await _wire.WriteAsync(RspEncoder.Frame(Encoding.Latin1.GetBytes("X3000,4:#$}*")), _cts.Token);
        Assert.IsType<RspAck>(await NextAsync());
        Assert.Equal("OK", await ReplyAsync());
        Assert.Equal("#$}*"u8.ToArray(), _target.Memory[0x3000..0x3004]);
        Assert.Equal("OK", await AskAsync("X1000,0:"));
        Assert.Equal("E01", await AskAsync("m20000,4")); // outside the fake's 64 KiB
        _target.Memory[0xffff] = 0xff;
        Assert.Equal("ff", await AskAsync("mffff,10")); // a partial read is a shorter reply
    }

    [Fact]
    public async Task Thread_queries()
    {
        Assert.Equal("m1,2", await AskAsync("qfThreadInfo"));
        Assert.Equal("l", await AskAsync("qsThreadInfo"));
        Assert.Equal("QC1", await AskAsync("qC"));
        Assert.Equal("1", await AskAsync("qAttached"));
        Assert.Equal("OK", await AskAsync("T2"));
        Assert.Equal("E01", await AskAsync("T3"));
        Assert.Equal(GdbReplies.HexText("vCPU 1"), await AskAsync("qThreadExtraInfo,2"));
    }

    [Fact]
    public async Task The_target_description_reads_back_whole_in_chunks()
    {
        var xml = new StringBuilder();
        for (var offset = 0; ;)
        {
            var chunk = await AskAsync($"qXfer:features:read:target.xml:{offset:x},100");
            xml.Append(chunk[1..]);
            offset += chunk.Length - 1;
            if (chunk[0] == 'l') break;
        }
        Assert.Equal(X86RegisterLayout.For(X86Mode.Long64).TargetXml, xml.ToString());
        Assert.Equal("E00", await AskAsync("qXfer:features:read:other.xml:0,100"));
    }

    [Fact]
    public async Task Unknown_and_must_reply_empty_packets_get_an_empty_reply_and_malformed_ones_an_error()
    {
        Assert.Equal("", await AskAsync("vMustReplyEmpty"));
        Assert.Equal("", await AskAsync("qTStatus"));
        Assert.Equal("vCont;c;C;s;S;t", await AskAsync("vCont?"));
        Assert.Equal("E01", await AskAsync("mzz,1"));
    }

    [Fact]
    public async Task Unsupported_watchpoints_get_an_empty_reply_so_gdb_falls_back_and_failed_removals_an_error()
    {
        _target.SupportsWatchpoints = false;
        Assert.Equal("", await AskAsync("Z2,2000,4"));
        Assert.Equal("E01", await AskAsync("z0,9999,1")); // nothing there to remove
        _target.SupportsWatchpoints = true;
        Assert.Equal("OK", await AskAsync("Z2,2000,4"));
    }

    [Fact]
    public async Task Detach_replies_OK_detaches_and_ends_the_session()
    {
        Assert.Equal("OK", await AskAsync("D"));
        await _session.WaitAsync(_cts.Token);
        Assert.True(_target.Detached);
    }

    [Fact]
    public async Task K_kills_and_ends_the_session_without_a_reply()
    {
        await SendAsync("k");
        Assert.IsType<RspAck>(await NextAsync());
        await _session.WaitAsync(_cts.Token);
        Assert.True(_target.Killed);
        Assert.False(_target.Detached);
    }

    [Fact]
    public async Task VKill_replies_OK_and_ends_the_session()
    {
        Assert.Equal("OK", await AskAsync("vKill;1"));
        await _session.WaitAsync(_cts.Token);
        Assert.True(_target.Killed);
    }

    [Fact]
    public async Task A_vanished_gdb_leaves_the_vm_detached_not_stopped()
    {
        await AskAsync("qC");
        _client.Client.Shutdown(SocketShutdown.Send);
        await _session.WaitAsync(_cts.Token);
        Assert.True(_target.Detached);
    }
}

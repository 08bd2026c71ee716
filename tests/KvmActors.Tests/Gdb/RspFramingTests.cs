using System.Text;
using KvmActors.Gdb;
using Xunit;

namespace KvmActors.Tests.Gdb;

public sealed class RspFramingTests
{
    private static byte[] B(string s) => Encoding.Latin1.GetBytes(s);

    /// <summary>"$data#cs" with the checksum computed over the bytes as given (no escaping).</summary>
    private static string Raw(string body)
    {
        var sum = 0;
        foreach (var c in B(body)) sum += c;
        return $"${body}#{sum & 0xff:x2}";
    }

    private static RspPacket Single(IReadOnlyList<RspEvent> events) => Assert.IsType<RspPacket>(Assert.Single(events));

    [Fact]
    public void Decodes_a_packet_fed_one_byte_at_a_time()
    {
        var decoder = new RspDecoder();
        var events = new List<RspEvent>();
        foreach (var b in B("$qC#b4")) events.AddRange(decoder.Feed([b]));
        Assert.Equal("qC", Single(events).Text);
    }

    [Fact]
    public void Acks_naks_and_the_interrupt_byte_come_out_of_band_in_order()
    {
        var events = new RspDecoder().Feed(B("+-\x03" + Raw("g") + "+"));
        Assert.Collection(events,
            e => Assert.IsType<RspAck>(e),
            e => Assert.IsType<RspNak>(e),
            e => Assert.IsType<RspInterrupt>(e),
            e => Assert.Equal("g", Assert.IsType<RspPacket>(e).Text),
            e => Assert.IsType<RspAck>(e));
    }

    [Fact]
    public void A_0x03_inside_a_packet_is_data_not_an_interrupt()
    {
        var packet = Single(new RspDecoder().Feed(B(Raw("X0,1:\x03"))));
        Assert.Equal(B("X0,1:\x03"), packet.Data);
    }

    [Fact]
    public void Verifies_checksums_and_rejects_a_bad_one_then_recovers()
    {
        var events = new RspDecoder().Feed(B("$g#00" + Raw("?")));
        Assert.Equal(new RspRejected(RspRejectReason.BadChecksum), events[0]);
        Assert.Equal("?", Assert.IsType<RspPacket>(events[1]).Text);
    }

    [Fact]
    public void A_checksum_that_is_not_hex_is_rejected()
    {
        Assert.Equal(new RspRejected(RspRejectReason.BadChecksum), Assert.Single(new RspDecoder().Feed(B("$g#zz"))));
    }

    [Fact]
    public void Checksum_digits_may_be_upper_case()
    {
        Assert.Equal("OK", Single(new RspDecoder().Feed(B("$OK#9A"))).Text);
    }

    [Fact]
    public void Unescapes_brace_escaped_bytes()
    {
        // '}' then c ^ 0x20: "}\x03" is '#', "}\x04" is '$', "}]" is '}', "}\x0a" is '*'.
        var packet = Single(new RspDecoder().Feed(B(Raw("X0,4:}\x03}\x04}]}\x0a"))));
        Assert.Equal(B("X0,4:#$}*"), packet.Data);
    }

    [Theory]
    [InlineData("0* ", "0000")] // ' ' (32) = 3 more
    [InlineData("a*!b", "aaaaab")] // '!' = 4 more
    [InlineData("x*~", 98)] // '~' (126) = 97 more, the most one run can say
    public void Expands_run_length_encoding(string body, object expected)
    {
        var text = Single(new RspDecoder().Feed(B(Raw(body)))).Text;
        if (expected is int n) Assert.Equal(new string('x', n), text);
        else Assert.Equal((string)expected, text);
    }

    [Fact]
    public void Runs_are_expanded_before_escapes_are_undone_as_gdb_does()
    {
        // "}]" is an escaped '}'; the run repeats the raw ']' (4 more), giving '}' then "]]]]".
        Assert.Equal("}]]]]", Single(new RspDecoder().Feed(B(Raw("}]*!")))).Text);
    }

    [Theory]
    [InlineData("*!")] // nothing to repeat
    [InlineData("a*")] // no count
    [InlineData("a*\x1f")] // count below ' '
    [InlineData("ab}")] // dangling escape
    public void Malformed_runs_and_escapes_are_rejected(string body)
    {
        Assert.Equal(new RspRejected(RspRejectReason.Malformed), Assert.Single(new RspDecoder().Feed(B(Raw(body)))));
    }

    [Fact]
    public void An_oversized_packet_is_rejected_without_being_stored_and_the_next_one_decodes()
    {
        var decoder = new RspDecoder();
        var huge = Raw("M0,8000:" + new string('a', RspDecoder.DefaultMaxPacketBytes));
        var events = decoder.Feed(B(huge + Raw("?")));
        Assert.Equal(new RspRejected(RspRejectReason.TooLong), events[0]);
        Assert.Equal("?", Assert.IsType<RspPacket>(events[1]).Text);
    }

    [Fact]
    public void A_packet_of_exactly_the_limit_is_accepted()
    {
        var decoder = new RspDecoder(64);
        Assert.Equal(64, Single(decoder.Feed(B(Raw(new string('a', 64))))).Data.Length);
    }

    [Fact]
    public void Run_length_expansion_past_the_limit_is_rejected()
    {
        // 4 raw bytes that would expand to 3 + 98 * 2 bytes: a hostile client must not make us allocate that.
        var decoder = new RspDecoder(64);
        Assert.Equal(new RspRejected(RspRejectReason.TooLong), Assert.Single(decoder.Feed(B(Raw("x*~y*~")))));
    }

    [Fact]
    public void A_dollar_inside_a_packet_restarts_framing_on_the_new_packet()
    {
        Assert.Equal("qC", Single(new RspDecoder().Feed(B("$gar" + Raw("qC")))).Text);
    }

    [Fact]
    public void Noise_between_packets_is_ignored()
    {
        Assert.Equal("g", Single(new RspDecoder().Feed(B("\r\nxyz" + Raw("g")))).Text);
    }

    [Fact]
    public void Encoder_frames_with_the_checksum()
    {
        Assert.Equal("$OK#9a", Encoding.Latin1.GetString(RspEncoder.Frame("OK")));
        Assert.Equal("$#00", Encoding.Latin1.GetString(RspEncoder.Frame("")));
    }

    [Fact]
    public void Encoder_escapes_dollar_hash_brace_and_star_and_sums_the_escaped_bytes()
    {
        var frame = Encoding.Latin1.GetString(RspEncoder.Frame("l$#}*"));
        Assert.Equal(Raw("l}\x04}\x03}]}\x0a"), frame);
    }

    [Fact]
    public void Encoder_compresses_runs_when_asked_and_not_otherwise()
    {
        Assert.Equal(Raw("0*\""), Encoding.Latin1.GetString(RspEncoder.Frame("000000", rle: true))); // '"' = 5 more
        Assert.Equal(Raw("000000"), Encoding.Latin1.GetString(RspEncoder.Frame("000000")));
        Assert.Equal(Raw("000"), Encoding.Latin1.GetString(RspEncoder.Frame("000", rle: true))); // no gain below 4
    }

    [Fact]
    public void Encoder_never_writes_a_run_count_that_is_a_framing_or_ack_byte()
    {
        for (var run = 1; run <= 400; run++)
        {
            var frame = RspEncoder.Frame(new string('0', run), rle: true);
            for (var i = 1; i < frame.Length - 3; i++)
                if (frame[i] == '*')
                    Assert.DoesNotContain((char)frame[++i], "#$+-"); // ++i: a count byte may itself be '*' (13 more)
            Assert.Equal(new string('0', run), Single(new RspDecoder().Feed(frame)).Text);
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Encoder_and_decoder_round_trip_arbitrary_bytes(bool rle)
    {
        var random = new Random(1234);
        for (var round = 0; round < 200; round++)
        {
            var payload = new byte[random.Next(0, 600)];
            for (var i = 0; i < payload.Length; i++)
                // Mostly long runs of a few values (including the special bytes) to exercise RLE with escapes.
                payload[i] = i > 0 && random.Next(4) != 0 ? payload[i - 1] : (byte)"0x$#}*+-\x03\0"[random.Next(10)];
            var decoded = Single(new RspDecoder().Feed(RspEncoder.Frame(payload, rle)));
            Assert.Equal(payload, decoded.Data);
        }
    }

    [Fact]
    public void Rle_makes_a_register_dump_much_shorter()
    {
        var g = new string('0', 200) + new string('x', 160);
        Assert.True(RspEncoder.Frame(g, rle: true).Length < 40);
    }
}

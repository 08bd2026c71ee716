using KvmActors.Runtime.Config;
using Xunit;

namespace KvmActors.Tests.ConfigBinding;

/// <summary><c>guest.expect</c>: what kvmactors test checks; bad values are ConfigExceptions naming the key and the file.</summary>
public sealed class ExpectConfigTests
{
    private static GuestExpectation Load(string expect) =>
        GuestConfigLoader.FromText($"guest {{ image.inline = \"f4\"\n{expect}\n}}", "guests/x.conf", AppContext.BaseDirectory).Expect;

    [Fact]
    public void Without_a_block_the_guest_is_expected_to_end_with_0_within_the_runners_timeout()
    {
        var e = Load("");
        Assert.Equal(0, e.Status);
        Assert.Empty(e.OutputContains);
        Assert.Null(e.OutputMatches);
        Assert.Null(e.Timeout);
    }

    [Fact]
    public void Every_key_is_bound_and_output_contains_takes_one_string_or_a_list()
    {
        var e = Load("expect { status = 85\n output-contains = \"42\"\n output-matches = \"^4.$\"\n timeout = 1500ms }");
        Assert.Equal(85, e.Status);
        Assert.Equal(["42"], e.OutputContains);
        Assert.Matches(e.OutputMatches!, "x\n42\ny");
        Assert.Equal(TimeSpan.FromMilliseconds(1500), e.Timeout);
        Assert.Equal(["a", "b c"], Load("expect.output-contains = [a, \"b c\"]").OutputContains);
    }

    [Theory]
    [InlineData("expect.status = 256", "guest.expect.status", "out of range")]
    [InlineData("expect.status = -1", "guest.expect.status", "not a number")]
    [InlineData("expect.status = [1]", "guest.expect.status", "not a list")]
    [InlineData("expect.output-contains = \"\"", "guest.expect.output-contains", "empty string")]
    [InlineData("expect.output-contains = [{ a = 1 }]", "guest.expect.output-contains[0]", "not an object")]
    [InlineData("expect.output-matches = \"(unclosed\"", "guest.expect.output-matches", "not a regular expression")]
    [InlineData("expect.timeout = soon", "guest.expect.timeout", "not a duration")]
    [InlineData("expect.timeout = 0s", "guest.expect.timeout", "out of range")]
    [InlineData("expect.timeout = 31d", "guest.expect.timeout", "out of range")]
    [InlineData("expect.exit = 1", "guest.expect.exit", "unknown key")]
    [InlineData("expect = 1", "guest.expect", "expected")]
    public void A_bad_value_names_the_key_and_the_file(string expect, string key, string problem)
    {
        var e = Assert.Throws<ConfigException>(() => Load(expect));
        Assert.Equal(key, e.Key);
        Assert.Equal("guests/x.conf", e.File);
        Assert.Contains(problem, e.Message);
    }
}

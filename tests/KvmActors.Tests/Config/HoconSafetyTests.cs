using KvmActors.Runtime.Config;
using Xunit;

namespace KvmActors.Tests.ConfigBinding;

/// <summary>HOCON that cannot be resolved or would overflow the parser's stack: config errors, never a crash.</summary>
public sealed class HoconSafetyTests
{
    private static ConfigException Fails(string hocon, string? dir = null, params string[] sets) =>
        Assert.Throws<ConfigException>(() => GuestConfigLoader.FromText(hocon, "guests/x.conf", dir ?? AppContext.BaseDirectory, sets));

    [Theory]
    [InlineData("guest.vcpus = ${guest.vcpus}\nguest.image.inline = f4")]
    [InlineData("guest { image.inline = f4\n name = ${guest.other}\n other = ${guest.name} }")]
    [InlineData("a = ${b}\nb = ${c}\nc = ${a}\nguest.image.inline = f4")]
    [InlineData("guest { image.inline = f4\n cpuid.mask = ${guest.cpuid.mask} [x2apic] }")]
    [InlineData("guest { image.inline = f4\n cpu { registers = { rax = ${guest.cpu} } } }")]
    public void Hocon_substitution_cycle_is_a_config_error(string hocon) =>
        Assert.Contains("refers back to itself", Fails(hocon).Message);

    [Fact]
    public void Hocon_substitution_cycle_in_set_is_blamed_on_set() =>
        Assert.Equal(GuestConfigLoader.OverridesSource, Fails("guest.image.inline = f4", null, "guest.vcpus=${guest.vcpus}").File);

    [Fact]
    public void Hocon_substitutions_that_expand_without_bound_are_a_config_error()
    {
        var lines = new List<string> { "a0 = [1, 2]" };
        for (var i = 1; i < 40; i++) lines.Add($"a{i} = ${{a{i - 1}}} ${{a{i - 1}}}");
        Assert.Contains("expand to more than", Fails(string.Join("\n", lines) + "\nguest.image.inline = f4").Message);
    }

    [Theory]
    [InlineData('{', '}')]
    [InlineData('[', ']')]
    public void Hocon_nested_ten_thousand_levels_is_a_config_error(char open, char close)
    {
        var text = "guest { image.inline = f4 }\nx = " + new string(open, 10_000) + new string(close, 10_000);
        if (open == '{') text = "guest { image.inline = f4 }\nx = " + string.Concat(Enumerable.Repeat("{ a ", 10_000)) + new string('}', 10_000);
        var e = Fails(text);
        Assert.Equal("(syntax)", e.Key);
        Assert.Contains("nested deeper than", e.Message);
    }

    [Theory]
    [InlineData("guest.image.inline = f4\nguest.cpuid.mask = [", "never closed")]
    [InlineData("guest { image.inline = f4\n cpuid.mask = [ x2apic = 1 ] }", "inside the list")]
    [InlineData("guest { image.inline = f4\n cpuid.mask = [ } ] }", "cannot close")]
    [InlineData("guest { image.inline = f4 } }", "closes nothing")]
    public void Hocon_text_akka_would_loop_on_is_a_syntax_error_at_once(string hocon, string problem)
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var e = Fails(hocon);
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(2), $"took {sw.Elapsed}");
        Assert.Equal("(syntax)", e.Key);
        Assert.Contains(problem, e.Message);
    }

    [Fact]
    public void Hocon_nesting_inside_strings_and_comments_does_not_count() =>
        Assert.Equal("{{{{[[[[", GuestConfigLoader.FromText(
            "# " + new string('{', 200) + "\nguest { image.inline = f4\n name = \"{{{{[[[[\" }", "x.conf", ".").Name);

    [Fact]
    public void Hocon_include_of_a_missing_file_names_it()
    {
        var e = Fails("include \"nothere.conf\"\nguest.image.inline = f4", Path.GetTempPath());
        Assert.Contains("nothere.conf", e.Key);
        Assert.Contains("not found", e.Message);
    }

    [Fact]
    public void Hocon_include_of_a_directory_or_fifo_names_it()
    {
        var dir = Directory.CreateTempSubdirectory("kvmactors-include-");
        try
        {
            Directory.CreateDirectory(Path.Combine(dir.FullName, "sub"));
            Assert.Contains("a directory", Fails("include \"sub\"\nguest.image.inline = f4", dir.FullName).Message);
            Support.Fifo.Make(Path.Combine(dir.FullName, "pipe"));
            Assert.Contains("a FIFO", Fails("include \"pipe\"\nguest.image.inline = f4", dir.FullName).Message);
        }
        finally { dir.Delete(recursive: true); }
    }

    [Fact]
    public void Hocon_include_of_a_file_merges_it_and_an_include_cycle_is_an_error()
    {
        var dir = Directory.CreateTempSubdirectory("kvmactors-include-");
        try
        {
            File.WriteAllText(Path.Combine(dir.FullName, "common.conf"), "guest.vcpus = 3");
            var spec = GuestConfigLoader.FromText("include \"common.conf\"\nguest.image.inline = f4", "x.conf", dir.FullName);
            Assert.Equal(3, spec.Machine.VcpuCount);
            File.WriteAllText(Path.Combine(dir.FullName, "loop.conf"), "include \"loop.conf\"");
            Assert.Contains("deeper than", Fails("include \"loop.conf\"\nguest.image.inline = f4", dir.FullName).Message);
        }
        finally { dir.Delete(recursive: true); }
    }

    [Fact]
    public void Hocon_parses_from_many_threads_at_once_each_get_their_own_text()
    {
        // One long-lived parser thread serves parses; callers that find it busy parse on a thread of their own.
        var results = new int[64];
        Parallel.For(0, results.Length, new ParallelOptions { MaxDegreeOfParallelism = 8 },
            i => results[i] = HoconText.Parse($"a {{ b = {i} }}", $"t{i}.conf", Path.GetTempPath()).GetInt("a.b"));
        Assert.Equal(Enumerable.Range(0, results.Length), results);
    }
}

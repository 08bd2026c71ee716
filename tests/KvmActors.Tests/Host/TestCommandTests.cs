using System.Xml.Linq;
using KvmActors.Tests.Support;
using Xunit;

namespace KvmActors.Tests.Host;

/// <summary>
/// <c>kvmactors test</c>, run as the real program on real KVM: guest files from hocon/guests and generated ones with
/// passing and failing guest.expect blocks; the JUnit file parsed back with System.Xml, the TAP stream, exit statuses.
/// </summary>
public sealed class TestCommandTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kvmactors-test-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    // Real-mode guests at 0x1000. Prints "42\n", then writes 42 to debug-exit port 0xf4: status (42 << 1) | 1 = 85.
    private const string Prints42Exits85 = "ba f8 03 b0 34 ee b0 32 ee b0 0a ee b0 2a e6 f4 eb fe";
    // jmp $: runs until stopped.
    private const string Spins = "eb fe";
    // 65535 OUTs to the unclaimed port 0x80 (one exit each: well over a second here), then debug-exit 85.
    private const string RunsAWhileExits85 = "b9 ff ff e6 80 e2 fc b0 2a e6 f4 eb fe";
    // "S", 3000 times "x", "END", then HLT (ends Halted, status 0).
    private const string Writes3004Bytes = "ba f8 03 b0 53 ee b9 b8 0b b0 78 ee e2 fd b0 45 ee b0 4e ee b0 44 ee f4";
    // Writes '<', '&', 0x01, ']]>' and 0x1b, then HLT: text an XML writer must escape or cannot carry at all.
    private const string WritesXmlHostileBytes = "ba f8 03 b0 3c ee b0 26 ee b0 01 ee b0 5d ee b0 5d ee b0 3e ee b0 1b ee f4";

    private string Guest(string file, string inline, string expect = "")
    {
        var path = Path.Combine(_dir, file);
        File.WriteAllText(path, $$"""
            guest {
              name = {{Path.GetFileNameWithoutExtension(file)}}
              memory = [
                { name = ram, address = 0x0, size = 64K }
              ]
              image {
                inline = "{{inline}}"
                load-address = 0x1000
              }
              cpu.registers.rip = 0x1000
              devices {
                exit {
                  type = debug-exit
                  ports = ["0xf4"]
                }
              }
              {{expect}}
            }
            """);
        return path;
    }

    // A suite of several guests in one process: given longer than one run on a heavily loaded machine (load 100 on 2 CPUs seen).
    private static Kvmactors.Result Suite(params string[] args) => Kvmactors.Run(TimeSpan.FromMinutes(3), ["test", .. args]);

    private static Dictionary<string, XElement> Cases(string junit)
    {
        var doc = XDocument.Load(junit);
        Assert.Equal("testsuites", doc.Root!.Name.LocalName);
        var suite = Assert.Single(doc.Root.Elements("testsuite"));
        var cases = suite.Elements("testcase").ToList();
        Assert.Equal(cases.Count.ToString(), (string?)suite.Attribute("tests"));
        return cases.ToDictionary(c => Path.GetFileName((string)c.Attribute("name")!));
    }

    private static string[] FailureTypes(XElement c) => c.Elements("failure").Select(f => (string)f.Attribute("type")!).ToArray();

    [KvmFact]
    public void Passing_and_failing_expectations_are_each_reported_in_junit_tap_and_the_summary_and_the_run_exits_1()
    {
        var pass = Guest("pass.conf", Prints42Exits85, "expect { status = 85\n output-contains = \"42\" }");
        var wrongStatus = Guest("wrong-status.conf", Prints42Exits85, "expect.status = 3");
        var missingOutput = Guest("missing-output.conf", Prints42Exits85, "expect { status = 85\n output-contains = [\"42\", \"43\"] }");
        var noMatch = Guest("no-match.conf", Prints42Exits85, "expect { status = 85\n output-matches = \"^43$\" }");
        var badConfig = Guest("bad-config.conf", Prints42Exits85, "vcpus = 0");
        var junit = Path.Combine(_dir, "results.xml");
        var r = Suite(pass, "hocon/guests/smp-hello.conf", wrongStatus, missingOutput, noMatch, badConfig, Path.Combine(_dir, "absent.conf"),
            "--jobs", "3", "--tap", "--junit", junit);

        Assert.Equal(1, r.ExitCode);
        var cases = Cases(junit);
        Assert.Equal(7, cases.Count);
        Assert.Empty(cases["pass.conf"].Elements("failure"));
        Assert.Equal("42\n", (string?)cases["pass.conf"].Element("system-out"));
        Assert.Equal("pass", (string?)cases["pass.conf"].Attribute("classname"));
        Assert.Empty(cases["smp-hello.conf"].Elements("failure"));
        Assert.Contains("hello from vCPU 3\n", (string?)cases["smp-hello.conf"].Element("system-out"));
        Assert.Equal(["status"], FailureTypes(cases["wrong-status.conf"]));
        Assert.Contains("exit status 85, expected 3", (string?)cases["wrong-status.conf"].Element("failure")!.Attribute("message"));
        Assert.Equal(["output"], FailureTypes(cases["missing-output.conf"]));
        Assert.Contains("does not contain \"43\"", (string?)cases["missing-output.conf"].Element("failure")!.Attribute("message"));
        Assert.Equal(["output"], FailureTypes(cases["no-match.conf"]));
        Assert.Equal(["config"], FailureTypes(cases["bad-config.conf"]));
        Assert.Contains("guest.vcpus", (string?)cases["bad-config.conf"].Element("failure")!.Attribute("message"));
        Assert.Contains("bad-config.conf", (string?)cases["bad-config.conf"].Element("failure")!.Attribute("message"));
        Assert.Equal(["config"], FailureTypes(cases["absent.conf"]));
        Assert.Equal("kvmactors", (string?)cases["absent.conf"].Attribute("classname"));
        Assert.Equal("5", (string?)XDocument.Load(junit).Root!.Element("testsuite")!.Attribute("failures"));

        // TAP: the plan, then one line per guest in command-line order; nothing else on stdout.
        var lines = r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("TAP version 13", lines[0]);
        Assert.Equal("1..7", lines[1]);
        var results = lines.Where(l => l.StartsWith("ok ") || l.StartsWith("not ok ")).ToArray();
        Assert.Equal([$"ok 1 - {pass}", "ok 2 - hocon/guests/smp-hello.conf", $"not ok 3 - {wrongStatus}", $"not ok 4 - {missingOutput}",
            $"not ok 5 - {noMatch}", $"not ok 6 - {badConfig}", $"not ok 7 - {Path.Combine(_dir, "absent.conf")}"], results);
        Assert.All(lines.Skip(2).Where(l => !results.Contains(l)), l => Assert.StartsWith("  ", l));
        Assert.DoesNotContain("hello from vCPU", r.Stdout);

        Assert.Contains("7 guest(s): 2 passed, 5 failed", r.Stderr);
        Assert.Matches(@"FAIL\s+\S+\s+85\s+3\s+\S*wrong-status\.conf", r.Stderr);
    }

    [KvmTheory]
    [InlineData("1")]
    [InlineData("4")]
    public void A_passing_suite_exits_0_with_nothing_on_stdout_at_any_jobs_count(string jobs)
    {
        // Two generated guests and the example guests, each with its own expect block (statuses 0, 85, 97, 65, 67, 69).
        var files = Enumerable.Range(0, 2).Select(i => Guest($"g{i}.conf", Prints42Exits85, "expect { status = 85\n output-contains = \"42\" }")).ToList();
        string[] examples = ["seed-demo", "debug-exit", "long", "protected", "multiboot", "fw-cfg"];
        var junit = Path.Combine(_dir, "results.xml");
        var r = Suite([.. files, .. examples.Select(e => $"hocon/guests/{e}.conf"), "--jobs", jobs, "--junit", junit]);

        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.Equal("", r.Stdout);
        var cases = Cases(junit);
        Assert.Equal(8, cases.Count);
        Assert.All(cases.Values, c => Assert.Empty(c.Elements("failure")));
        Assert.Equal("4\n", (string?)cases["seed-demo.conf"].Element("system-out"));
        Assert.Contains("hello from long mode", (string?)cases["long.conf"].Element("system-out"));
        Assert.Contains($"8 guest(s): 8 passed, 0 failed", r.Stderr);
        Assert.Contains($"(--jobs {jobs})", r.Stderr);
    }

    [KvmFact]
    public void A_guest_that_times_out_fails_alone_while_the_others_run_on_and_status_124_can_be_expected()
    {
        var spin = Guest("spin.conf", Spins, "expect.timeout = 300ms");
        var expectedTimeout = Guest("expected-timeout.conf", Spins, "expect { timeout = 300ms\n status = 124 }");
        var slow = Guest("slow.conf", RunsAWhileExits85, "expect { status = 85\n timeout = 60s }");
        var junit = Path.Combine(_dir, "results.xml");
        var r = Suite(slow, spin, expectedTimeout, "--jobs", "3", "--junit", junit, "--timeout", "1ms");

        Assert.Equal(1, r.ExitCode);
        var cases = Cases(junit);
        Assert.Equal(["timeout"], FailureTypes(cases["spin.conf"]));
        Assert.Contains("after 300ms", (string?)cases["spin.conf"].Element("failure")!.Attribute("message"));
        Assert.Empty(cases["expected-timeout.conf"].Elements("failure"));
        // The slow guest ran on past the spinners' stop (its own timeout, not --timeout 1ms, applies) and passed.
        Assert.Empty(cases["slow.conf"].Elements("failure"));
        Assert.True(double.Parse((string)cases["slow.conf"].Attribute("time")!, System.Globalization.CultureInfo.InvariantCulture) >
                    double.Parse((string)cases["spin.conf"].Attribute("time")!, System.Globalization.CultureInfo.InvariantCulture), r.Stderr);
        Assert.Contains("3 guest(s): 2 passed, 1 failed", r.Stderr);
    }

    [KvmFact]
    public void The_output_kept_is_bounded_and_guest_bytes_xml_cannot_carry_are_escaped()
    {
        var settings = Path.Combine(_dir, "runner.conf");
        File.WriteAllText(settings, "test.output-kept = 1K\n");
        var big = Guest("big.conf", Writes3004Bytes, "expect.output-contains = [\"xEND\", \"S\"]");
        var hostile = Guest("hostile.conf", WritesXmlHostileBytes, "expect.output-contains = \"<&\"");
        var junit = Path.Combine(_dir, "results.xml");
        var r = Suite(big, hostile, "--config", settings, "--junit", junit);

        Assert.Equal(1, r.ExitCode);
        var cases = Cases(junit);
        // Only the last 1 KiB was kept: the end is there, the leading "S" is not.
        var output = (string)cases["big.conf"].Element("system-out")!;
        Assert.Contains("the guest wrote 3004 bytes", output);
        Assert.EndsWith(new string('x', 1021) + "END", output);
        var failure = Assert.Single(cases["big.conf"].Elements("failure"));
        Assert.Contains("does not contain \"S\"", (string)failure.Attribute("message")!);
        Assert.Empty(cases["hostile.conf"].Elements("failure"));
        Assert.Equal("<&\\x01]]>\\x1b", (string?)cases["hostile.conf"].Element("system-out"));
    }

    [KvmFact]
    public void Sigint_stops_the_running_guests_and_still_writes_the_summary_and_junit()
    {
        var running = Guest("running.conf", Spins, "expect.timeout = 60s");
        var queued = Guest("queued.conf", Spins);
        var junit = Path.Combine(_dir, "results.xml");
        using var p = new Kvmactors.Running("test", running, queued, "--jobs", "1", "--junit", junit);
        Assert.True(p.WaitUntil(x => x.HasKvmVm(), TimeSpan.FromMinutes(2)), p.Stderr);
        p.Signal(2);
        var r = p.WaitForExit(TimeSpan.FromMinutes(2));

        Assert.Equal(130, r.ExitCode);
        var cases = Cases(junit);
        Assert.Equal(["interrupted"], FailureTypes(cases["running.conf"]));
        Assert.Single(cases["queued.conf"].Elements("skipped"));
        Assert.Contains("0 passed, 1 failed, 1 not run", r.Stderr);
        Assert.Equal("", r.Stdout);
    }

    [Theory]
    [InlineData(new[] { "test" }, "Required argument missing")]
    [InlineData(new[] { "test", "a.conf", "--jobs", "0" }, "--jobs: 0 is outside")]
    [InlineData(new[] { "test", "a.conf", "--jbos", "2" }, "did you mean --jobs")]
    [InlineData(new[] { "test", "a.conf", "--timeout", "soon" }, "not a duration")]
    public void A_bad_command_line_exits_2_naming_the_problem(string[] args, string problem)
    {
        var r = Kvmactors.Run(args);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains(problem, r.Stderr);
        Assert.Equal("", r.Stdout);
    }

    [Fact]
    public void A_bad_settings_file_exits_2_naming_the_key_and_the_file()
    {
        var settings = Path.Combine(_dir, "runner.conf");
        File.WriteAllText(settings, "test.output-kept = 0\n");
        var r = Kvmactors.Run("test", "hocon/guests/seed-demo.conf", "--config", settings);
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("runner.conf", r.Stderr);
        Assert.Contains("kvmactors.test.output-kept", r.Stderr);
    }

    [KvmFact]
    public void Kvmactors_run_ignores_the_expect_block()
    {
        var r = Kvmactors.Run("run", Guest("expects-3.conf", Prints42Exits85, "expect { status = 3\n output-contains = \"absent\" }"));
        Assert.Equal(85, r.ExitCode);
        Assert.Equal("42\n", r.Stdout);
    }
}

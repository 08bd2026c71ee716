using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using KvmActors.Tests.Support;
using Xunit;

namespace KvmActors.Tests.Serve;

/// <summary>One real server shared by the API tests of this class (they run one after another).</summary>
public sealed class SharedServer : IDisposable
{
    private readonly Lazy<ServeServer> _server = new(() => ServeServer.Start(dir =>
    {
        // Inside the guest dir: a real image file, and a symlink that points out of it.
        File.WriteAllBytes(Path.Combine(dir, "guests", "seed.bin"), Guests.Seed);
        File.WriteAllText(Path.Combine(dir, "outside.bin"), "not for guests");
        File.CreateSymbolicLink(Path.Combine(dir, "guests", "link.bin"), Path.Combine(dir, "outside.bin"));
    }));

    public ServeServer Server => _server.Value;

    public void Dispose()
    {
        if (_server.IsValueCreated) _server.Value.Dispose();
    }
}

public sealed class ServeApiTests(SharedServer shared) : IClassFixture<SharedServer>
{
    private ServeServer S => shared.Server;

    [KvmFact]
    public async Task Many_vms_created_at_once_each_print_their_own_text()
    {
        const int n = 30;
        var created = await Task.WhenAll(Enumerable.Range(0, n).Select(i =>
            i % 5 == 4 ? S.CreateAsync(ServeGuests.Example("smp-hello.conf"), $"smp-{i}")
                       : S.CreateAsync(ServeGuests.Printing($"I am VM number {i}\n"), $"vm-{i}")));
        Assert.Equal(n, created.Select(c => (string)c["id"]!).Distinct().Count());
        for (int i = 0; i < n; i++)
        {
            var id = (string)created[i]["id"]!;
            Assert.Equal(i % 5 == 4 ? $"smp-{i}" : $"vm-{i}", (string)created[i]["name"]!);
            var vm = await S.WaitStateAsync(id, "ended");
            Assert.Equal("Halted", (string)vm["end"]!["reason"]!);
            var text = await S.ConsoleAsync(id);
            if (i % 5 == 4)
                Assert.Equal(Enumerable.Range(0, 4).Select(v => $"hello from vCPU {v}"), text.Split('\n', StringSplitOptions.RemoveEmptyEntries).Order());
            else
                Assert.Equal($"I am VM number {i}\n", text);
        }
        Assert.Equal("", S.Stdout); // no guest byte, no log line on the server's stdout
        Assert.Contains("vm=" + (string)created[0]["id"]!, S.Stderr); // VM log lines carry the VM id
    }

    [KvmFact]
    public async Task A_running_vm_shows_its_exits_so_far_and_they_grow()
    {
        // mov dx, 0x3f8; mov al, 'A'; out dx, al; jmp back to the out: an exit per byte, forever.
        var flood = """
            guest {
              name = flood
              memory = [
                { address = 0, size = 64K }
              ]
              image {
                inline = "ba f8 03 b0 41 ee eb fd"
                load-address = 0x1000
              }
              cpu.registers.rip = 0x1000
            }
            """;
        var id = (string)(await S.CreateAsync(flood))["id"]!;
        await S.WaitStateAsync(id, "running");
        long Exits(JsonObject vm) => (long)vm["exits"]!;
        var first = await S.GetVmAsync(id);
        var later = first;
        for (var i = 0; i < 100 && Exits(later) <= Exits(first); i++)
        {
            await Task.Delay(50);
            later = await S.GetVmAsync(id);
        }
        Assert.True(Exits(later) > Exits(first), $"exits stayed at {Exits(first)}");
        Assert.Equal("vcpu-0", (string)later["vcpuDetails"]![0]!["thread"]!);
        using var stop = await S.Http.PostAsync($"vms/{id}/stop", null);
        Assert.True(stop.IsSuccessStatusCode);
    }

    [KvmFact]
    public async Task Post_answers_201_with_location_and_accepts_hocon_bodies()
    {
        var content = new StringContent(ServeGuests.Printing("hocon body\n"), Encoding.UTF8, "application/hocon");
        using var r = await S.Http.PostAsync("vms?name=from-hocon", content);
        Assert.Equal(HttpStatusCode.Created, r.StatusCode);
        var body = JsonNode.Parse(await r.Content.ReadAsStringAsync())!;
        var id = (string)body["id"]!;
        Assert.Equal($"/vms/{id}", r.Headers.Location!.OriginalString);
        Assert.Equal("from-hocon", (string)body["name"]!);
        Assert.Contains((string)body["state"]!, new[] { "creating", "running", "ended" });
        await S.WaitStateAsync(id, "ended");
        Assert.Equal("hocon body\n", await S.ConsoleAsync(id));

        var report = JsonNode.Parse(await S.Http.GetStringAsync($"vms/{id}/report"))!;
        Assert.Equal("Halted", (string)report["reason"]!);
        Assert.Equal(0, (int)report["exitStatus"]!);
        Assert.True((long)report["vcpus"]![0]!["exits"]! > 0);

        var list = JsonNode.Parse(await S.Http.GetStringAsync("vms"))!.AsArray();
        var mine = list.Single(v => (string)v!["id"]! == id)!;
        Assert.Equal(1, (int)mine["vcpus"]!);
        Assert.Equal(65536, (long)mine["memory"]!);
        Assert.True((long)mine["exits"]! > 0);
    }

    [KvmFact]
    public async Task Console_offsets_give_the_rest_and_the_first_kept_offset()
    {
        var vm = await S.CreateAsync(ServeGuests.Printing("0123456789"));
        var id = (string)vm["id"]!;
        await S.WaitStateAsync(id, "ended");
        using var r = await S.Http.GetAsync($"vms/{id}/console?offset=4");
        Assert.Equal("456789", await r.Content.ReadAsStringAsync());
        Assert.Equal("0", r.Headers.GetValues("X-Console-First-Offset").Single());
        Assert.Equal("4", r.Headers.GetValues("X-Console-Start").Single());
        Assert.Equal("10", r.Headers.GetValues("X-Console-Next-Offset").Single());
        Assert.Equal("", await S.ConsoleAsync(id, 10));
        using var bad = await S.Http.GetAsync($"vms/{id}/console?offset=-1");
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
    }

    [KvmFact]
    public async Task Console_follow_streams_echoed_input_until_the_vm_ends()
    {
        // uart-echo echoes every byte it receives and ends through debug-exit at 'q'.
        var vm = await S.CreateAsync(ServeGuests.Example("uart-echo.conf"));
        var id = (string)vm["id"]!;
        using var r = await S.Http.GetAsync($"vms/{id}/console?follow=true", HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        await using var stream = await r.Content.ReadAsStreamAsync();
        using var post = await S.Http.PostAsync($"vms/{id}/console", new ByteArrayContent("hello"u8.ToArray()));
        Assert.Equal(HttpStatusCode.OK, post.StatusCode);

        var seen = new StringBuilder();
        var buffer = new byte[256];
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        while (!seen.ToString().Contains("hello"))
        {
            var n = await stream.ReadAsync(buffer, cts.Token);
            Assert.NotEqual(0, n); // the stream must not end before the VM does
            seen.Append(Encoding.Latin1.GetString(buffer, 0, n));
        }
        Assert.Equal("running", (string)(await S.GetVmAsync(id))["state"]!);
        using var quit = await S.Http.PostAsync($"vms/{id}/console", new ByteArrayContent("q"u8.ToArray()));
        // The stream ends (chunked end) once the VM has ended.
        int m;
        while ((m = await stream.ReadAsync(buffer, cts.Token)) > 0) seen.Append(Encoding.Latin1.GetString(buffer, 0, m));
        Assert.Equal("hello", seen.ToString());
        var ended = await S.WaitStateAsync(id, "ended");
        Assert.Equal("GuestExit", (string)ended["end"]!["reason"]!);
        using var late = await S.Http.PostAsync($"vms/{id}/console", new ByteArrayContent("x"u8.ToArray()));
        Assert.Equal(HttpStatusCode.Conflict, late.StatusCode);
    }

    [KvmFact]
    public async Task A_spinning_vm_pauses_resumes_and_stops_idempotently_with_409_where_not_allowed()
    {
        var id = (string)(await S.CreateAsync(ServeGuests.Spin))["id"]!;
        await S.WaitStateAsync(id, "running");
        for (int i = 0; i < 2; i++)
        {
            using var p = await S.Http.PostAsync($"vms/{id}/pause", null);
            Assert.Equal(HttpStatusCode.OK, p.StatusCode);
            Assert.Equal("paused", (string)JsonNode.Parse(await p.Content.ReadAsStringAsync())!["state"]!);
        }
        using (var report = await S.Http.GetAsync($"vms/{id}/report"))
            Assert.Equal(HttpStatusCode.Conflict, report.StatusCode);
        for (int i = 0; i < 2; i++)
        {
            using var r = await S.Http.PostAsync($"vms/{id}/resume", null);
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
            Assert.Equal("running", (string)JsonNode.Parse(await r.Content.ReadAsStringAsync())!["state"]!);
        }
        for (int i = 0; i < 2; i++)
        {
            using var s = await S.Http.PostAsync($"vms/{id}/stop", null);
            Assert.Equal(HttpStatusCode.OK, s.StatusCode);
            var body = JsonNode.Parse(await s.Content.ReadAsStringAsync())!;
            Assert.Equal("ended", (string)body["state"]!);
            Assert.Equal("StoppedOnRequest", (string)body["end"]!["reason"]!);
        }
        foreach (var op in new[] { "pause", "resume" })
        {
            using var c = await S.Http.PostAsync($"vms/{id}/{op}", null);
            Assert.Equal(HttpStatusCode.Conflict, c.StatusCode);
            Assert.Equal("application/problem+json", c.Content.Headers.ContentType!.MediaType);
        }
        using var del = await S.Http.DeleteAsync($"vms/{id}");
        Assert.Equal(HttpStatusCode.NoContent, del.StatusCode);
        using var gone = await S.Http.GetAsync($"vms/{id}");
        Assert.Equal(HttpStatusCode.NotFound, gone.StatusCode);
    }

    [KvmFact]
    public async Task Failing_vms_end_alone_next_to_healthy_ones()
    {
        var healthy = await Task.WhenAll(Enumerable.Range(0, 4).Select(i => S.CreateAsync(ServeGuests.Printing($"healthy {i}\n"))));
        var spinner = (string)(await S.CreateAsync(ServeGuests.Spin))["id"]!;
        var failing = (string)(await S.CreateAsync(ServeGuests.Failing))["id"]!;
        // A device whose options are wrong fails at VM setup: the VM ends as a fault with status 2.
        var badDevice = (string)(await S.CreateAsync(ServeGuests.Printing("x"), null, "guest.devices.com1.options.irq=5000"))["id"]!;
        // A vCPU that throws beyond its restart budget ends its VM as a fault.
        var crashing = (string)(await S.CreateAsync(ServeGuests.Printing("crash\n"), null,
            "guest.faults.vcpus.\"0\".throw-after-exits=3", "guest.faults.vcpus.\"0\".repeat=true",
            "guest.supervision.vcpu.max-restarts=1"))["id"]!;

        var f = await S.WaitStateAsync(failing, "ended");
        Assert.Equal("GuestFailure", (string)f["end"]!["reason"]!);
        Assert.Equal(1, (int)f["end"]!["exitStatus"]!);
        Assert.Contains("unmapped port 0x99", (string)f["failure"]!);
        var b = await S.WaitStateAsync(badDevice, "ended");
        Assert.Equal("Fault", (string)b["end"]!["reason"]!);
        Assert.Equal(2, (int)b["end"]!["exitStatus"]!);
        var c = await S.WaitStateAsync(crashing, "ended");
        Assert.Equal("Fault", (string)c["end"]!["reason"]!);
        Assert.True((int)c["restarts"]! >= 1);

        foreach (var (vm, i) in healthy.Select((v, i) => (v, i)))
        {
            var id = (string)vm["id"]!;
            Assert.Equal("Halted", (string)(await S.WaitStateAsync(id, "ended"))["end"]!["reason"]!);
            Assert.Equal($"healthy {i}\n", await S.ConsoleAsync(id));
        }
        // The spinning VM still runs, and the host still serves.
        Assert.Equal("running", (string)(await S.GetVmAsync(spinner))["state"]!);
        using var stop = await S.Http.PostAsync($"vms/{spinner}/stop", null);
        Assert.Equal(HttpStatusCode.OK, stop.StatusCode);
        using var health = await S.Http.GetAsync("healthz");
        Assert.Equal(HttpStatusCode.OK, health.StatusCode);
    }

    [KvmFact]
    public async Task Bad_requests_are_problem_details_naming_key_file_and_line()
    {
        using (var r = await S.Http.GetAsync("vms/doesnotexist"))
        {
            Assert.Equal(HttpStatusCode.NotFound, r.StatusCode);
            Assert.Equal("application/problem+json", r.Content.Headers.ContentType!.MediaType);
        }
        foreach (var op in new[] { "pause", "resume", "stop", "console", "report" })
        {
            using var r = op is "report" or "console" ? await S.Http.GetAsync($"vms/nope/{op}") : await S.Http.PostAsync($"vms/nope/{op}", null);
            Assert.Equal(HttpStatusCode.NotFound, r.StatusCode);
        }
        using (var r = await S.Http.DeleteAsync("vms/nope")) Assert.Equal(HttpStatusCode.NotFound, r.StatusCode);

        var problem = await Problem(await S.PostCreateAsync("guest {\n  name = x\n  vcpu = 2\n}\n"), 400);
        Assert.Equal("guest.vcpu", (string)problem["key"]!);
        Assert.Equal("POST /vms", (string)problem["file"]!);
        Assert.Equal(3, (int)problem["line"]!);
        Assert.Contains("unknown key", (string)problem["detail"]!);

        problem = await Problem(await S.PostCreateAsync(ServeGuests.Printing("x"), null, "guest.vcpus=zero"), 400);
        Assert.Equal("guest.vcpus", (string)problem["key"]!);
        await Problem(await S.PostCreateAsync("guest { name = \"unterminated }"), 400);
        await Problem(await S.Http.PostAsync("vms", new StringContent("{not json", Encoding.UTF8, "application/json")), 400);
        await Problem(await S.Http.PostAsync("vms", new StringContent("x", Encoding.UTF8, "image/png")), 415);
        problem = await Problem(await S.PostCreateAsync("kvmactors.devices.plugin-directories = [\"/tmp\"]\nguest.name = x"), 400);
        Assert.Equal("kvmactors", (string)problem["key"]!);
    }

    [KvmFact]
    public async Task File_paths_resolve_in_the_guest_dir_and_may_not_leave_it()
    {
        static string WithImage(string file) => $$"""
            guest {
              memory = [
                { name = ram, address = 0x0, size = 64K }
              ]
              image {
                file = "{{file}}"
                load-address = 0x1000
              }
              cpu.registers { rip = 0x1000, rax = 2, rbx = 2 }
            }
            """;
        var ok = await S.CreateAsync(WithImage("seed.bin"));
        await S.WaitStateAsync((string)ok["id"]!, "ended");
        Assert.Equal("4\n", await S.ConsoleAsync((string)ok["id"]!));

        foreach (var escape in new[] { "../outside.bin", "/etc/passwd", "link.bin", "sub/../../outside.bin", Path.Combine(S.Dir, "outside.bin") })
        {
            var problem = await Problem(await S.PostCreateAsync(WithImage(escape)), 400);
            Assert.Equal("guest.image.file", (string)problem["key"]!);
            Assert.Contains("outside the guest directory", (string)problem["detail"]!);
        }
        // file: sinks of other devices too.
        var sink = await Problem(await S.PostCreateAsync(ServeGuests.Printing("x"), null,
            "guest.devices.dbg.type=debugcon", "guest.devices.dbg.ports=[\"0xe9\"]", "guest.devices.dbg.options.sink=\"file:../x.txt\""), 400);
        Assert.Equal("guest.devices.dbg.options.sink", (string)sink["key"]!);
    }

    [KvmFact]
    public async Task Metrics_parse_as_prometheus_text_and_count_what_happened()
    {
        var before = PrometheusText.Parse(await S.MetricsAsync());
        var a = (string)(await S.CreateAsync(ServeGuests.Printing("12345"), "m1"))["id"]!;
        var b = (string)(await S.CreateAsync(ServeGuests.Printing("678"), "m2"))["id"]!;
        var c = (string)(await S.CreateAsync(ServeGuests.Failing, "m3"))["id"]!;
        using (var refused = await S.PostCreateAsync("guest.vcpu = 1")) Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
        foreach (var id in new[] { a, b, c }) await S.WaitStateAsync(id, "ended");
        var after = PrometheusText.Parse(await S.MetricsAsync());

        double Delta(string series) => after.GetValueOrDefault(series) - before.GetValueOrDefault(series);
        Assert.Equal(3, Delta("kvmactors_vms_created_total"));
        Assert.Equal(1, Delta("kvmactors_vms_refused_total{status=\"400\"}"));
        Assert.Equal(2, Delta("kvmactors_vms_ended_total{reason=\"Halted\"}"));
        Assert.Equal(1, Delta("kvmactors_vms_ended_total{reason=\"GuestFailure\"}"));
        Assert.Equal(8, Delta("kvmactors_console_bytes_total"));
        // The printers' exits: per byte an IN (LSR) and an OUT at least, then HLT.
        Assert.True(after[$"kvmactors_vm_exits_total{{vm=\"{a}\",reason=\"Io\"}}"] >= 10);
        Assert.Equal(1, after[$"kvmactors_vm_exits_total{{vm=\"{a}\",reason=\"Hlt\"}}"]);
        Assert.True(Delta("kvmactors_exits_total{reason=\"Io\"}") >= 16);
        Assert.True(after["kvmactors_vms{state=\"ended\"}"] >= 3);
        Assert.True(after["kvmactors_host_rss_bytes"] > 10 << 20);
        Assert.True(after["kvmactors_host_threads"] > 1);
        Assert.True(after["kvmactors_host_fds"] > 3);
    }

    private static async Task<JsonObject> Problem(HttpResponseMessage r, int status)
    {
        using (r)
        {
            var text = await r.Content.ReadAsStringAsync();
            Assert.True(status == (int)r.StatusCode, $"expected {status}, got {(int)r.StatusCode}: {text}");
            Assert.Equal("application/problem+json", r.Content.Headers.ContentType!.MediaType);
            var o = JsonNode.Parse(text)!.AsObject();
            Assert.Equal(status, (int)o["status"]!);
            Assert.False(string.IsNullOrEmpty((string?)o["title"]));
            return o;
        }
    }
}

/// <summary>A strict reader of the Prometheus text exposition format: every line a comment or `name{labels} value`.</summary>
public static class PrometheusText
{
    private static readonly System.Text.RegularExpressions.Regex Sample = new(
        @"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{(?:[a-zA-Z_][a-zA-Z0-9_]*=""(?:[^""\\]|\\.)*"",?)*\})?) (-?[0-9.eE+\-]+|NaN|\+Inf|-Inf)$");

    public static Dictionary<string, double> Parse(string text)
    {
        var samples = new Dictionary<string, double>();
        foreach (var line in text.Split('\n'))
        {
            if (line.Length == 0) continue;
            if (line.StartsWith("# HELP ") || line.StartsWith("# TYPE ")) continue;
            var m = Sample.Match(line);
            Assert.True(m.Success, $"not a Prometheus sample line: '{line}'");
            samples[m.Groups[1].Value] = double.Parse(m.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture);
        }
        return samples;
    }
}

using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.Json.Nodes;
using KvmActors.Host.VmClient;
using KvmActors.Tests.Support;
using Xunit;

namespace KvmActors.Tests.Serve;

/// <summary>Tests that need a server of their own: signals, limits, listeners, leaks, the CLI client.</summary>
public sealed class ServeProcessTests
{
    [KvmFact]
    public async Task Sigterm_stops_every_vm_with_its_report_then_the_process()
    {
        using var s = ServeServer.Start("--report-dir", "{dir}/reports");
        var ids = new List<string>();
        for (int i = 0; i < 5; i++) ids.Add((string)(await s.CreateAsync(ServeGuests.Spin, $"spin-{i}"))["id"]!);
        var paused = ids[0];
        foreach (var id in ids) await s.WaitStateAsync(id, "running");
        using (var p = await s.Http.PostAsync($"vms/{paused}/pause", null)) Assert.Equal(HttpStatusCode.OK, p.StatusCode);

        Assert.Equal(0, s.Terminate());
        Assert.Equal("", s.Stdout);
        foreach (var id in ids)
        {
            var report = JsonNode.Parse(File.ReadAllText(Path.Combine(s.Dir, "reports", $"{id}.json")))!;
            Assert.Equal("StoppedOnRequest", (string)report["reason"]!);
            Assert.Equal("host shutting down", (string)report["detail"]!);
            Assert.Equal(id, (string)report["id"]!);
            Assert.Contains($"VM {id} (spin-", s.Stderr);
            Assert.Contains($"vm={id} VM {id} (spin-{ids.IndexOf(id)}) ended: StoppedOnRequest", s.Stderr);
        }
        Assert.False(File.Exists(s.Socket)); // the socket is removed on the way out
    }

    [KvmFact]
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    public async Task Socket_is_0600_and_tcp_listens_on_loopback_but_refuses_other_addresses_without_allow_remote()
    {
        var refused = Kvmactors.Run(TimeSpan.FromSeconds(30), "serve", "--socket", Path.Combine(Path.GetTempPath(), $"kvmactors-refused-{Guid.NewGuid():N}.sock"),
            "--listen", "tcp:0.0.0.0:18099");
        Assert.Equal(2, refused.ExitCode);
        Assert.Contains("--allow-remote", refused.Stderr);
        Assert.Equal("", refused.Stdout);
        var bad = Kvmactors.Run(TimeSpan.FromSeconds(30), "serve", "--listen", "tcp:nonsense");
        Assert.Equal(2, bad.ExitCode);

        var port = FreePort();
        using var s = ServeServer.Start("--listen", $"tcp:127.0.0.1:{port}");
        using var tcp = ApiClient.ForHost($"http://127.0.0.1:{port}", TimeSpan.FromSeconds(10));
        using var r = await tcp.GetAsync("healthz");
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        // The Unix socket is there too, created mode 0600.
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(s.Socket));
    }

    [KvmFact]
    public async Task Host_limits_answer_429_and_507_with_the_reason()
    {
        using var s = ServeServer.Start(dir => File.WriteAllText(Path.Combine(dir, "host.conf"), """
            host {
              max-vms = 3
              max-vcpus-total = 4
              max-memory-total = 1M
              console-ring = 16
            }
            """), "--config", "{dir}/host.conf");
        var spins = new List<string>();
        spins.Add((string)(await s.CreateAsync(ServeGuests.Spin))["id"]!);

        // 4 more vCPUs would make 5 > max-vcpus-total = 4.
        var problem = await Refused(await s.PostCreateAsync(ServeGuests.Example("smp-hello.conf")), 429);
        Assert.Equal("host.max-vcpus-total", (string)problem["key"]!);
        Assert.Contains("max-vcpus-total = 4", (string)problem["reason"]!);
        // 1 MiB more RAM would exceed 1M.
        problem = await Refused(await s.PostCreateAsync(ServeGuests.Spin, null, "guest.memory=[{name=ram, address=0, size=1M}]"), 507);
        Assert.Equal("host.max-memory-total", (string)problem["key"]!);

        spins.Add((string)(await s.CreateAsync(ServeGuests.Spin))["id"]!);
        spins.Add((string)(await s.CreateAsync(ServeGuests.Spin))["id"]!);
        problem = await Refused(await s.PostCreateAsync(ServeGuests.Spin), 429);
        Assert.Equal("host.max-vms", (string)problem["key"]!);

        // Ended VMs give their share back.
        using (var stop = await s.Http.PostAsync($"vms/{spins[0]}/stop", null)) Assert.Equal(HttpStatusCode.OK, stop.StatusCode);
        spins.Add((string)(await s.CreateAsync(ServeGuests.Spin))["id"]!);
        var metrics = PrometheusText.Parse(await s.MetricsAsync());
        Assert.Equal(2, metrics["kvmactors_vms_refused_total{status=\"429\"}"]);
        Assert.Equal(1, metrics["kvmactors_vms_refused_total{status=\"507\"}"]);
        Assert.Equal(3, metrics["kvmactors_vms{state=\"running\"}"] + metrics["kvmactors_vms{state=\"creating\"}"]);

        // console-ring = 16: of 40 bytes printed, the last 16 are kept, from offset 24.
        using (var stop = await s.Http.PostAsync($"vms/{spins[1]}/stop", null)) Assert.Equal(HttpStatusCode.OK, stop.StatusCode);
        var printer = (string)(await s.CreateAsync(ServeGuests.Printing("0123456789012345678901234567890123456789")))["id"]!;
        await s.WaitStateAsync(printer, "ended");
        using var console = await s.Http.GetAsync($"vms/{printer}/console");
        Assert.Equal("4567890123456789", await console.Content.ReadAsStringAsync());
        Assert.Equal("24", console.Headers.GetValues("X-Console-First-Offset").Single());
    }

    private static async Task<JsonObject> Refused(HttpResponseMessage r, int status)
    {
        using (r)
        {
            var text = await r.Content.ReadAsStringAsync();
            Assert.True(status == (int)r.StatusCode, $"expected {status}, got {(int)r.StatusCode}: {text}");
            Assert.Equal("application/problem+json", r.Content.Headers.ContentType!.MediaType);
            return JsonNode.Parse(text)!.AsObject();
        }
    }

    private static int FreePort()
    {
        var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        var port = ((IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        return port;
    }
}

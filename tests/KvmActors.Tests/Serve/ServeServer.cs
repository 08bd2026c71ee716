using System.Diagnostics;
using System.Net.Http.Json;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json.Nodes;
using KvmActors.Host.VmClient;
using KvmActors.Tests.Support;

namespace KvmActors.Tests.Serve;

/// <summary>
/// The real <c>kvmactors serve</c> process on a socket in a temporary folder, with an HttpClient over that
/// socket. Its stderr is collected; its stdout must stay empty.
/// </summary>
public sealed class ServeServer : IDisposable
{
    public string Dir { get; }
    public string Socket { get; }
    public string GuestDir { get; }
    public Process Process { get; }
    public HttpClient Http { get; }
    private readonly Task _readers;
    private readonly StringBuilder _out, _err;

    public string Stderr { get { lock (_err) return _err.ToString(); } }
    public string Stdout { get { lock (_out) return _out.ToString(); } }

    private ServeServer(string dir, Process process, Task readers, StringBuilder stdout, StringBuilder stderr)
    {
        _out = stdout;
        _err = stderr;
        Dir = dir;
        Socket = Path.Combine(dir, "s.sock");
        GuestDir = Path.Combine(dir, "guests");
        Process = process;
        _readers = readers;
        Http = ApiClient.ForSocket(Socket, TimeSpan.FromSeconds(30));
    }

    /// <summary>
    /// Starts a server (its guest dir is DIR/guests; "{dir}" in <paramref name="extra"/> becomes DIR) and waits,
    /// bounded, until /healthz answers.
    /// </summary>
    public static ServeServer Start(params string[] extra) => Start(null, extra);

    public static ServeServer Start(Action<string>? prepare, params string[] extra)
    {
        var dir = Directory.CreateTempSubdirectory("kvmactors-serve-").FullName;
        Directory.CreateDirectory(Path.Combine(dir, "guests"));
        prepare?.Invoke(dir);
        var psi = Kvmactors.StartInfo(["serve", "--socket", Path.Combine(dir, "s.sock"), "--guest-dir", Path.Combine(dir, "guests"),
            .. extra.Select(a => a.Replace("{dir}", dir))]);
        var p = Process.Start(psi)!;
        p.StandardInput.Close();
        var stdout = new StringBuilder();
        var stderr = new StringBuilder();
        var readers = Task.WhenAll(Pump(p.StandardOutput, stdout), Pump(p.StandardError, stderr));
        var server = new ServeServer(dir, p, readers, stdout, stderr);
        var sw = Stopwatch.StartNew();
        while (true)
        {
            if (p.HasExited) throw new InvalidOperationException($"serve exited {p.ExitCode}: {stderr}");
            if (File.Exists(server.Socket))
            {
                try
                {
                    using var r = server.Http.GetAsync("healthz").GetAwaiter().GetResult();
                    if (r.IsSuccessStatusCode) return server;
                }
                catch (HttpRequestException) { }
            }
            if (sw.Elapsed > TimeSpan.FromSeconds(20)) throw new TimeoutException($"serve did not answer within 20 s: {stderr}");
            Thread.Sleep(20);
        }
    }

    private static async Task Pump(StreamReader reader, StringBuilder into)
    {
        var buffer = new char[4096];
        int n;
        while ((n = await reader.ReadAsync(buffer)) > 0)
            lock (into) into.Append(buffer, 0, n);
    }

    public async Task<JsonObject> CreateAsync(string config, string? name = null, params string[] sets)
    {
        using var r = await PostCreateAsync(config, name, sets);
        var body = await r.Content.ReadAsStringAsync();
        if ((int)r.StatusCode != 201) throw new InvalidOperationException($"POST /vms: {(int)r.StatusCode} {body}");
        return JsonNode.Parse(body)!.AsObject();
    }

    public Task<HttpResponseMessage> PostCreateAsync(string config, string? name = null, params string[] sets) =>
        Http.PostAsJsonAsync("vms", new { name, config, set = sets });

    public async Task<JsonObject> GetVmAsync(string id) => JsonNode.Parse(await Http.GetStringAsync($"vms/{id}"))!.AsObject();

    /// <summary>Polls the VM (bounded) until its state is <paramref name="state"/>.</summary>
    public async Task<JsonObject> WaitStateAsync(string id, string state, TimeSpan? limit = null)
    {
        var sw = Stopwatch.StartNew();
        while (true)
        {
            var vm = await GetVmAsync(id);
            if ((string)vm["state"]! == state) return vm;
            if (sw.Elapsed > (limit ?? TimeSpan.FromSeconds(20))) throw new TimeoutException($"VM {id} still {vm["state"]}, not {state}");
            await Task.Delay(10);
        }
    }

    public async Task<string> ConsoleAsync(string id, long offset = 0) =>
        Encoding.Latin1.GetString(await Http.GetByteArrayAsync($"vms/{id}/console?offset={offset}"));

    public async Task<string> MetricsAsync() => await Http.GetStringAsync("metrics");

    [DllImport("libc", SetLastError = true)]
    private static extern int kill(int pid, int sig);

    public void Signal(int sig) => kill(Process.Id, sig);

    /// <summary>SIGTERM, then waits (bounded) for the exit; returns the exit code.</summary>
    public int Terminate(TimeSpan? limit = null)
    {
        Signal(15);
        if (!Process.WaitForExit(limit ?? TimeSpan.FromSeconds(30))) throw new TimeoutException("serve did not exit after SIGTERM");
        Process.WaitForExit();
        _readers.Wait(TimeSpan.FromSeconds(5));
        return Process.ExitCode;
    }

    public void Dispose()
    {
        Http.Dispose();
        if (!Process.HasExited)
        {
            try { Terminate(TimeSpan.FromSeconds(15)); }
            catch (Exception) { Process.Kill(entireProcessTree: true); }
        }
        Process.Dispose();
        try { Directory.Delete(Dir, recursive: true); } catch (IOException) { }
    }
}

/// <summary>Guest files the server tests post.</summary>
public static class ServeGuests
{
    /// <summary>A real-mode guest that prints <paramref name="text"/> on COM1 (polled) and halts.</summary>
    public static string Printing(string text, string name = "printer") => $$"""
        guest {
          name = {{name}}
          memory = [
            { name = ram, address = 0x0, size = 64K }
          ]
          image {
            inline = "{{Guests.Hex(Guests.PrintText(text))}}"
            load-address = 0x1000
          }
          cpu.registers.rip = 0x1000
        }
        """;

    public static string Spin => File.ReadAllText(Path.Combine(RepoRoot.Path, "hocon/guests/spin.conf"));
    public static string Example(string file) => File.ReadAllText(Path.Combine(RepoRoot.Path, "hocon/guests", file));

    /// <summary>A guest that fails: an IN from a port no device claims, with unmapped-io = strict.</summary>
    public static string Failing => $$"""
        guest {
          name = failing
          memory = [
            { name = ram, address = 0x0, size = 64K }
          ]
          image {
            inline = "{{Guests.Hex(Guests.EchoPortWord(0x99))}}"
            load-address = 0x1000
          }
          cpu.registers.rip = 0x1000
          unmapped-io = strict
        }
        """;
}

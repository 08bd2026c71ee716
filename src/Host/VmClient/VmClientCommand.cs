using System.CommandLine;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using KvmActors.Host.Serve;

namespace KvmActors.Host.VmClient;

/// <summary>
/// <c>kvmactors vm …</c>: a client for the serve API, like Cloud Hypervisor's ch-remote. Human tables by
/// default, <c>--json</c> for scripts. Exit status: 0 done, 1 server-side failure (5xx, server unreachable),
/// 2 usage or config error (and any 4xx: its problem detail is printed on stderr).
/// </summary>
public static class VmClientCommand
{
    public static async Task<int> RunAsync(string[] args)
    {
        var socket = new Option<string?>("--socket") { Description = "the server's Unix socket (default as kvmactors serve's)", Recursive = true };
        var host = new Option<string?>("--host") { Description = "the server over TCP instead: http://127.0.0.1:PORT or tcp:127.0.0.1:PORT", Recursive = true };
        var json = new Option<bool>("--json") { Description = "print the server's JSON instead of a table", Recursive = true };
        var root = new Command("vm", "Drive a kvmactors serve host") { socket, host, json, new System.CommandLine.Help.HelpOption() };

        var id = new Argument<string>("ID") { Description = "the VM's id (from vm create or vm list)" };
        var file = new Argument<string>("GUEST.conf") { Description = "the guest file; its text is sent to the server (relative file paths resolve in the server's --guest-dir)" };
        var set = new Option<string[]>("--set") { Description = "override one setting (key=value, repeatable)", Arity = ArgumentArity.ZeroOrMore, AllowMultipleArgumentsPerToken = false };
        var name = new Option<string?>("--name") { Description = "the VM's name (default: guest.name)" };
        var follow = new Option<bool>("--follow", "-f") { Description = "stream the console until the VM ends" };
        var offset = new Option<long>("--offset") { Description = "first console byte to show (default 0: all that is kept)" };

        var create = new Command("create", "Create and start a VM from a guest file") { file, set, name };
        var list = new Command("list", "List the VMs (of the whole fleet, each with its node, on a serve --cluster node)");
        var show = new Command("show", "Show one VM") { id };
        var pause = new Command("pause", "Pause a VM") { id };
        var resume = new Command("resume", "Resume a paused VM") { id };
        var stop = new Command("stop", "Stop a VM (it keeps its report until rm)") { id };
        var rm = new Command("rm", "Stop a VM if needed and forget it") { id };
        var console = new Command("console", "Print a VM's console output") { id, follow, offset };
        var report = new Command("report", "Print an ended VM's end report (JSON)") { id };
        var dir = new Argument<string>("DIR") { Description = "a snapshot directory, relative to the server's --snapshot-dir" };
        var noResume = new Option<bool>("--no-resume") { Description = "leave the VM paused after the snapshot (vm resume runs it on)" };
        var snapshot = new Command("snapshot", "Save a running VM into a new snapshot directory (it is paused meanwhile, then resumed)") { id, dir, noResume };
        var restoreName = new Option<string?>("--name") { Description = "the restored VM's name (default: the saved one)" };
        var to = new Option<string>("--to") { Description = "the other server: unix:/path/to.sock or http://127.0.0.1:PORT (in a fleet: a node's HOST:PORT)", Required = true };
        var migrate = new Command("migrate", "Move a running VM to another kvmactors serve without stopping its guest (live migration)") { id, to };
        var restore = new Command("restore", "Create a VM from a snapshot directory; it runs on from where it was saved") { dir, restoreName };
        foreach (var c in new[] { create, list, show, pause, resume, stop, rm, console, report, snapshot, restore, migrate }) root.Subcommands.Add(c);

        var parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            foreach (var e in parsed.Errors) Console.Error.WriteLine($"kvmactors vm: {e.Message}");
            return ExitCodes.Usage;
        }
        if (parsed.Action is System.CommandLine.Help.HelpAction)
        {
            await parsed.InvokeAsync();
            return ExitCodes.Ok;
        }

        var asJson = parsed.GetValue(json);
        using var http = parsed.GetValue(host) is { } h ? ApiClient.ForHost(h) : ApiClient.ForSocket(parsed.GetValue(socket) ?? ServeCommand.DefaultSocket());
        var command = parsed.CommandResult.Command;
        try
        {
            if (command == create)
            {
                var path = parsed.GetValue(file)!;
                if (!File.Exists(path))
                {
                    Console.Error.WriteLine($"kvmactors vm: {path}: no such file");
                    return ExitCodes.Usage;
                }
                var body = new JsonObject
                {
                    ["name"] = parsed.GetValue(name),
                    ["config"] = await File.ReadAllTextAsync(path),
                    ["set"] = new JsonArray((parsed.GetValue(set) ?? []).Select(s => (JsonNode)s).ToArray()),
                };
                using var r = await http.PostAsync("vms", new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json"));
                return await Print(r, o => Console.WriteLine(o!["id"]), asJson);
            }
            if (command == snapshot)
            {
                var body = new JsonObject { ["path"] = parsed.GetValue(dir), ["resume"] = !parsed.GetValue(noResume) };
                using var r = await http.PostAsync($"vms/{Uri.EscapeDataString(parsed.GetValue(id)!)}/snapshot", new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json"));
                return await Print(r, o => Console.WriteLine($"{o!["id"]} {o["state"]}: {o["path"]} ({(long)o["memoryBytes"]! >> 10} KiB memory, {(long)o["dataBytes"]! >> 10} KiB written, {o["totalMs"]} ms)"), asJson);
            }
            if (command == migrate)
            {
                var body = new JsonObject { ["to"] = parsed.GetValue(to) };
                using var r = await http.PostAsync($"vms/{Uri.EscapeDataString(parsed.GetValue(id)!)}/migrate", new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json"));
                return await Print(r, o => Console.WriteLine($"{o!["id"]} migrated to {o["to"]} as {o["targetId"]}: downtime {o["downtimeMs"]} ms, total {o["totalMs"]} ms, {(long)o["bytesSent"]! >> 10} KiB in {o["rounds"]} round(s)"), asJson);
            }
            if (command == restore)
            {
                var body = new JsonObject { ["restore"] = parsed.GetValue(dir), ["name"] = parsed.GetValue(restoreName) };
                using var r = await http.PostAsync("vms", new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json"));
                return await Print(r, o => Console.WriteLine(o!["id"]), asJson);
            }
            if (command == list)
            {
                using var r = await http.GetAsync("vms");
                return await Print(r, o => Table(o!.AsArray()), asJson);
            }
            if (command == show)
            {
                using var r = await http.GetAsync($"vms/{Uri.EscapeDataString(parsed.GetValue(id)!)}");
                return await Print(r, Show, asJson);
            }
            if (command == report)
            {
                using var r = await http.GetAsync($"vms/{Uri.EscapeDataString(parsed.GetValue(id)!)}/report");
                return await Print(r, o => Console.WriteLine(o!.ToJsonString(new JsonSerializerOptions { WriteIndented = true })), asJson);
            }
            if (command == pause || command == resume || command == stop)
            {
                using var r = await http.PostAsync($"vms/{Uri.EscapeDataString(parsed.GetValue(id)!)}/{command.Name}", null);
                return await Print(r, o => Console.WriteLine($"{o!["id"]} {o["state"]}"), asJson);
            }
            if (command == rm)
            {
                using var r = await http.DeleteAsync($"vms/{Uri.EscapeDataString(parsed.GetValue(id)!)}");
                return await Print(r, _ => { }, asJson);
            }
            if (command == console)
            {
                var url = $"vms/{Uri.EscapeDataString(parsed.GetValue(id)!)}/console?offset={parsed.GetValue(offset)}{(parsed.GetValue(follow) ? "&follow=true" : "")}";
                using var r = await http.GetAsync(url, HttpCompletionOption.ResponseHeadersRead);
                if (!r.IsSuccessStatusCode) return await Print(r, _ => { }, asJson);
                await using var stream = await r.Content.ReadAsStreamAsync();
                await using var stdout = Console.OpenStandardOutput();
                var buffer = new byte[16 * 1024];
                int n;
                while ((n = await stream.ReadAsync(buffer)) > 0)
                {
                    await stdout.WriteAsync(buffer.AsMemory(0, n));
                    await stdout.FlushAsync();
                }
                return ExitCodes.Ok;
            }
            return ExitCodes.Usage;
        }
        catch (HttpRequestException e)
        {
            Console.Error.WriteLine($"kvmactors vm: cannot reach the server ({(parsed.GetValue(host) ?? "unix:" + (parsed.GetValue(socket) ?? ServeCommand.DefaultSocket()))}): {e.Message}");
            return ExitCodes.GuestFailure;
        }
    }

    /// <summary>Prints a success with <paramref name="human"/> (or the JSON), a problem on stderr; maps the status to the exit status.</summary>
    private static async Task<int> Print(HttpResponseMessage r, Action<JsonNode?> human, bool asJson)
    {
        var text = await r.Content.ReadAsStringAsync();
        JsonNode? node = null;
        try { if (text.Length > 0) node = JsonNode.Parse(text); } catch (JsonException) { }
        if (r.IsSuccessStatusCode)
        {
            if (asJson) { if (text.Length > 0) Console.WriteLine(text); }
            else human(node);
            return ExitCodes.Ok;
        }
        var status = (int)r.StatusCode;
        if (asJson && text.Length > 0) Console.Error.WriteLine(text);
        else if (node is JsonObject p)
        {
            Console.Error.WriteLine($"kvmactors vm: {status} {p["title"]}: {p["detail"]}");
            foreach (var key in new[] { "key", "file", "line" })
                if (p[key] is { } v) Console.Error.WriteLine($"  {key}: {v}");
        }
        else Console.Error.WriteLine($"kvmactors vm: {status} {r.ReasonPhrase}: {text}");
        return status is >= 400 and < 500 && r.StatusCode != HttpStatusCode.RequestTimeout ? ExitCodes.Usage : ExitCodes.GuestFailure;
    }

    private static void Table(JsonArray vms)
    {
        // A fleet (serve --cluster) lists every node's VMs, each with its node: then a NODE column.
        var fleet = vms.Any(v => v?["node"] is not null);
        var rows = new List<string[]> { new[] { "ID", "NAME", "STATE", "VCPUS", "MEMORY", "UPTIME", "EXITS" }.Concat(fleet ? ["NODE"] : []).ToArray() };
        foreach (var v in vms)
            rows.Add([
                (string)v!["id"]!, (string)v["name"]!, (string)v["state"]!, v["vcpus"]!.ToString(),
                Size((ulong)v["memory"]!), Uptime((double)v["uptimeMs"]!), v["exits"]?.ToString() ?? "-",
                .. fleet ? [(string?)v["node"] ?? "-"] : Array.Empty<string>(),
            ]);
        var widths = Enumerable.Range(0, rows[0].Length).Select(i => rows.Max(r => r[i].Length)).ToArray();
        foreach (var r in rows) Console.WriteLine(string.Join("  ", r.Select((c, i) => c.PadRight(widths[i]))).TrimEnd());
    }

    private static void Show(JsonNode? o)
    {
        if (o is not JsonObject vm) return;
        void Line(string k, object? v) => Console.WriteLine($"{k,-10} {v}");
        Line("id", vm["id"]);
        Line("name", vm["name"]);
        Line("state", vm["state"]);
        Line("vcpus", vm["vcpus"]);
        Line("memory", Size((ulong)vm["memory"]!));
        Line("uptime", Uptime((double)vm["uptimeMs"]!));
        Line("console", $"{vm["consoleBytes"]} bytes");
        if (vm["end"] is JsonObject end)
        {
            Line("end", $"{end["reason"]}: {end["detail"]} (exit status {end["exitStatus"]})");
            Line("exits", vm["exits"]);
            Line("restarts", vm["restarts"]);
            foreach (var v in vm["vcpuDetails"]!.AsArray())
                Line($"vcpu {v!["id"]}", $"thread {v["thread"]} (tid {v["nativeThreadId"]}), {v["exits"]} exits, {v["restarts"]} restart(s){((bool)v["halted"]! ? ", halted" : "")}");
            if (vm["failure"] is { } f) Console.WriteLine(f.ToString());
        }
    }

    private static string Size(ulong b) => b >= 1 << 30 && b % (1 << 30) == 0 ? $"{b >> 30}G" : b >= 1 << 20 && b % (1 << 20) == 0 ? $"{b >> 20}M" : $"{b >> 10}K";

    private static string Uptime(double ms) => ms < 1000 ? $"{ms:0}ms" : ms < 120_000 ? $"{ms / 1000:0.0}s" : $"{ms / 60000:0}m";
}

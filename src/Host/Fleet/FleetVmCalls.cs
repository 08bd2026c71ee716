using System.Net.Http.Headers;
using System.Text;
using KvmActors.Host.Serve;
using KvmActors.Host.Serve.Migration;

namespace KvmActors.Host.Fleet;

/// <summary>
/// The owner node's answers to a VM's calls that its entity leaves to <see cref="FleetDrainActor"/>: a migrate (the
/// fleet's move), a console long poll (a follow through another node), and report, snapshot, delete and console input,
/// which this node's own API answers (over its socket), so that through another node they answer exactly as here.
/// </summary>
public sealed class FleetVmCalls(Func<VmHost> host, FleetDrain drain, string? endpoint, FleetDrainSettings settings)
{
    /// <summary>Marks a long poll's answer: the VM has ended here and every byte went out, so the follow ends.</summary>
    public const string ConsoleClosedHeader = "X-Console-Closed";

    private readonly Lazy<HttpClient?> _self = new(() => endpoint is null ? null : MigrationSender.ClientFor(endpoint));

    public Task<FleetAnswer> Answer(HostedVm vm, FleetVmCall call) => call.Kind switch
    {
        <= FleetVmCallKind.Console => VmEntity.Answer(host(), vm, call),
        FleetVmCallKind.ConsoleWait => ConsoleWait(vm, call.Offset),
        FleetVmCallKind.Migrate => drain.MoveOneAsync(vm.Id, call.Body is { Length: > 0 } to ? Encoding.UTF8.GetString(to) : null),
        FleetVmCallKind.Report => Http(HttpMethod.Get, $"vms/{vm.Id}/report", call),
        FleetVmCallKind.Snapshot => Http(HttpMethod.Post, $"vms/{vm.Id}/snapshot", call),
        FleetVmCallKind.Delete => Http(HttpMethod.Delete, $"vms/{vm.Id}", call),
        FleetVmCallKind.ConsoleInput => Http(HttpMethod.Post, $"vms/{vm.Id}/console", call),
        _ => Task.FromResult(FleetAnswer.Problem(400, "Unknown call", $"call {call.Kind} for VM {vm.Id}")),
    };

    /// <summary>
    /// The console's bytes past <paramref name="offset"/>, waiting up to follow-poll for the first; closed once the VM
    /// ended here and nothing is left. A VM that migrated away is not closed: its follower asks again, and reaches it there.
    /// </summary>
    private async Task<FleetAnswer> ConsoleWait(HostedVm vm, long offset)
    {
        using (var poll = new CancellationTokenSource(settings.FollowPoll))
        {
            try { await vm.Console.WaitAsync(offset, poll.Token); }
            catch (OperationCanceledException) { }
        }
        var closed = vm.Console.Closed;
        var (first, start, bytes) = vm.Console.Read(offset, 64 * 1024);
        var ended = closed && vm.MigratedTo is null && start + bytes.Length >= vm.Console.Total;
        return new FleetAnswer(200, "application/octet-stream", bytes, new()
        {
            [ServeApi.ConsoleFirstOffsetHeader] = first.ToString(), [ServeApi.ConsoleStartHeader] = start.ToString(),
            [ServeApi.ConsoleNextOffsetHeader] = (start + bytes.Length).ToString(), [ConsoleClosedHeader] = ended ? "true" : "false",
        });
    }

    /// <summary>The call as a request to this node's own API, where the VM is local; its answer as it came.</summary>
    private async Task<FleetAnswer> Http(HttpMethod method, string path, FleetVmCall call)
    {
        if (_self.Value is not { } http) return FleetAnswer.Problem(501, "No local API", "this node does not know its own API's address");
        using var request = new HttpRequestMessage(method, path);
        if (call.Body is not null)
        {
            request.Content = new ByteArrayContent(call.Body);
            if (call.ContentType is { } type && MediaTypeHeaderValue.TryParse(type, out var parsed)) request.Content.Headers.ContentType = parsed;
        }
        using var timeout = new CancellationTokenSource(host().Settings.RequestTimeout + TimeSpan.FromSeconds(30));
        try
        {
            using var response = await http.SendAsync(request, timeout.Token);
            var body = await response.Content.ReadAsByteArrayAsync(timeout.Token);
            return new FleetAnswer((int)response.StatusCode, response.Content.Headers.ContentType?.ToString() ?? "", body, []);
        }
        catch (Exception e) when (e is HttpRequestException or OperationCanceledException)
        {
            return FleetAnswer.Problem(502, "Owner's API did not answer", $"VM {call.VmId}: {e.Message}");
        }
    }
}

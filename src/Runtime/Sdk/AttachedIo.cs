using System.Collections.Concurrent;

namespace KvmActors.Sdk;

/// <summary>
/// Sinks and inputs that a host program attaches under a name before it starts a VM, for device options
/// <c>sink = "attached:NAME"</c> and <c>input = "attached:NAME"</c> (kvmactors serve attaches each VM's
/// console ring and console input this way). Unlike <c>memory:NAME</c>, an attachment is removed again
/// (<see cref="Detach"/>), so a long-running host keeps nothing of an ended VM.
/// </summary>
public sealed class AttachedIo
{
    public const string Prefix = "attached:";

    private readonly ConcurrentDictionary<string, IGuestOutput> _outputs = new();
    private readonly ConcurrentDictionary<string, IHostInput> _inputs = new();

    public void Attach(string name, IGuestOutput? output, IHostInput? input)
    {
        if (output is not null) _outputs[name] = output;
        if (input is not null) _inputs[name] = input;
    }

    public void Detach(string name)
    {
        _outputs.TryRemove(name, out _);
        _inputs.TryRemove(name, out _);
    }

    public IGuestOutput Output(string name) =>
        _outputs.TryGetValue(name, out var o) ? o : throw new ArgumentException($"no sink attached as '{name}'");

    public IHostInput Input(string name) =>
        _inputs.TryGetValue(name, out var i) ? i : throw new ArgumentException($"no input attached as '{name}'");
}

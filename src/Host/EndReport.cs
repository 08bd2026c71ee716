using System.Text.Json;
using System.Text.Json.Nodes;
using KvmActors.Runtime.Kvm;
using KvmActors.Runtime.Vm;
using KvmActors.Sdk;

namespace KvmActors.Host;

/// <summary>
/// The end report of a run: written as JSON with <c>--report FILE</c> so scripts and tests read it
/// instead of parsing logs, and summarised in one line on stderr.
/// </summary>
public static class EndReport
{
    public static JsonObject ToJson(VmEnded ended, int exitStatus, TimeSpan duration) => new()
    {
        ["vm"] = ended.VmName,
        ["reason"] = ended.Reason.ToString(),
        ["detail"] = ended.Detail,
        ["exitStatus"] = exitStatus,
        ["durationMs"] = Math.Round(duration.TotalMilliseconds, 1),
        ["failure"] = ended.Failure is { } f
            ? new JsonObject
            {
                ["vcpu"] = f.VcpuId,
                ["exitReason"] = f.ExitReason,
                ["explanation"] = f.Explanation,
                ["instruction"] = f.FaultingInstruction,
                ["registers"] = Registers(f.Registers),
                ["segments"] = Segments(f.SpecialRegisters),
            }
            : null,
        ["vcpus"] = new JsonArray(ended.Vcpus.Select(v => (JsonNode)new JsonObject
        {
            ["id"] = v.VcpuId,
            ["thread"] = v.ThreadName,
            ["exits"] = v.Exits,
            ["halted"] = v.Halted,
            ["restarts"] = v.Restarts,
            ["registers"] = v.FinalRegisters is { } r ? Registers(r) : null,
            ["exitsByReason"] = new JsonObject(v.ExitsByReason.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value))),
            ["exitsByPort"] = new JsonObject(v.ExitsByPort.OrderBy(kv => kv.Key)
                .Select(kv => KeyValuePair.Create($"0x{kv.Key:x}", (JsonNode?)kv.Value))),
        }).ToArray()),
        ["actorFailures"] = new JsonArray(ended.ActorFailures.Select(f => (JsonNode)new JsonObject
        {
            ["actor"] = f.Actor,
            ["exception"] = f.Exception,
            ["message"] = f.Message,
            ["restarted"] = f.Restarted,
            ["at"] = f.At.ToString("O"),
        }).ToArray()),
    };

    public static void Write(string path, VmEnded ended, int exitStatus, TimeSpan duration) =>
        File.WriteAllText(path, ToJson(ended, exitStatus, duration).ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");

    /// <summary>
    /// Writes the report, or says in one line on stderr why it could not be (a missing folder, a directory,
    /// a full disk). The write runs on its own thread for at most <paramref name="limit"/>: opening a FIFO
    /// nobody reads blocks in open(2), and the process exit ends that thread.
    /// </summary>
    public static bool TryWrite(string path, VmEnded ended, int exitStatus, TimeSpan duration, TimeSpan limit)
    {
        string? problem;
        if (Directory.Exists(path)) problem = "is a directory";
        else
        {
            var write = Task.Factory.StartNew(() => Write(path, ended, exitStatus, duration), TaskCreationOptions.LongRunning);
            write.ContinueWith(t => _ = t.Exception, TaskContinuationOptions.OnlyOnFaulted); // observed, even after the limit
            try { problem = write.Wait(limit) ? null : $"not written within {limit} (a FIFO nobody reads?)"; }
            catch (AggregateException e) { problem = e.InnerException?.Message ?? e.Message; }
        }
        if (problem is null) return true;
        Console.Error.WriteLine($"kvmactors: report not written: {path}: {problem}");
        return false;
    }

    private static JsonObject Registers(in KvmRegs r) => new()
    {
        ["rax"] = Hex(r.Rax), ["rbx"] = Hex(r.Rbx), ["rcx"] = Hex(r.Rcx), ["rdx"] = Hex(r.Rdx),
        ["rsi"] = Hex(r.Rsi), ["rdi"] = Hex(r.Rdi), ["rsp"] = Hex(r.Rsp), ["rbp"] = Hex(r.Rbp),
        ["r8"] = Hex(r.R8), ["r9"] = Hex(r.R9), ["r10"] = Hex(r.R10), ["r11"] = Hex(r.R11),
        ["r12"] = Hex(r.R12), ["r13"] = Hex(r.R13), ["r14"] = Hex(r.R14), ["r15"] = Hex(r.R15),
        ["rip"] = Hex(r.Rip), ["rflags"] = Hex(r.Rflags),
    };

    private static JsonObject Segments(in KvmSregs s) => new()
    {
        ["cs"] = Segment(s.Cs), ["ds"] = Segment(s.Ds), ["es"] = Segment(s.Es),
        ["fs"] = Segment(s.Fs), ["gs"] = Segment(s.Gs), ["ss"] = Segment(s.Ss),
        ["cr0"] = Hex(s.Cr0), ["cr3"] = Hex(s.Cr3), ["cr4"] = Hex(s.Cr4), ["efer"] = Hex(s.Efer),
    };

    private static JsonObject Segment(in KvmSegment g) => new()
    {
        ["selector"] = Hex(g.Selector), ["base"] = Hex(g.Base), ["limit"] = Hex(g.Limit),
    };

    private static string Hex(ulong v) => $"0x{v:x}";
}

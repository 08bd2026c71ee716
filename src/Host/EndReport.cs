using System.Text.Json;
using System.Text.Json.Nodes;
using KvmActors.Runtime.Config;
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
                ["specialRegisters"] = SpecialRegisters(f.SpecialRegisters),
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
            ["specialRegisters"] = v.FinalSpecialRegisters is { } sr ? SpecialRegisters(sr) : null,
            ["exitsByReason"] = new JsonObject(v.ExitsByReason.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value))),
            ["exitsByPort"] = new JsonObject(v.ExitsByPort.OrderBy(kv => kv.Key)
                .Select(kv => KeyValuePair.Create($"0x{kv.Key:x}", (JsonNode?)kv.Value))),
        }).ToArray()),
        ["memory"] = new JsonArray(ended.MemoryDumps.Select(d => (JsonNode)new JsonObject
        {
            ["address"] = Hex(d.Address),
            ["length"] = d.Bytes.Length,
            ["hex"] = Convert.ToHexStringLower(d.Bytes),
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

    /// <summary>Everything KVM_GET_SREGS gives, named as the guest file's cpu.registers and cpu.segments keys.</summary>
    private static JsonObject SpecialRegisters(in KvmSregs s) => new()
    {
        ["cr0"] = Hex(s.Cr0), ["cr2"] = Hex(s.Cr2), ["cr3"] = Hex(s.Cr3), ["cr4"] = Hex(s.Cr4), ["cr8"] = Hex(s.Cr8),
        ["efer"] = Hex(s.Efer), ["apicBase"] = Hex(s.ApicBase),
        ["cs"] = FullSegment(s.Cs), ["ds"] = FullSegment(s.Ds), ["es"] = FullSegment(s.Es), ["fs"] = FullSegment(s.Fs),
        ["gs"] = FullSegment(s.Gs), ["ss"] = FullSegment(s.Ss), ["tr"] = FullSegment(s.Tr), ["ldtr"] = FullSegment(s.Ldt),
        ["gdtr"] = new JsonObject { ["base"] = Hex(s.Gdt.Base), ["limit"] = Hex(s.Gdt.Limit) },
        ["idtr"] = new JsonObject { ["base"] = Hex(s.Idt.Base), ["limit"] = Hex(s.Idt.Limit) },
    };

    private static JsonObject FullSegment(in KvmSegment g) => new()
    {
        ["selector"] = Hex(g.Selector), ["base"] = Hex(g.Base), ["limit"] = Hex(g.Limit), ["type"] = g.Type, ["dpl"] = g.Dpl,
        ["db"] = g.Db != 0, ["l"] = g.L != 0, ["g"] = g.G != 0, ["s"] = g.S != 0, ["present"] = g.Present != 0,
        ["avl"] = g.Avl != 0, ["unusable"] = g.Unusable != 0,
    };

    /// <summary>
    /// The --report-memory ranges, checked against the guest's regions before the VM starts: each within one region
    /// (RAM or ROM), all together at most <paramref name="limit"/> bytes. A bad one is a usage error naming it.
    /// </summary>
    public static IReadOnlyList<GuestMemoryRange> CheckMemoryRanges(IReadOnlyList<GuestMemoryRange> ranges, IReadOnlyList<MemoryRegionSpec> regions, ulong limit)
    {
        foreach (var r in ranges)
            if (!regions.Any(m => r.Address >= m.GuestAddress && r.Address - m.GuestAddress + r.Length <= m.Size))
                throw new UsageException($"--report-memory 0x{r.Address:x}:0x{r.Length:x}: {r} is not within one of the guest's memory regions " +
                                         $"({string.Join(", ", regions.Select(m => $"{m.Name} [0x{m.GuestAddress:x}, 0x{m.GuestAddress + m.Size:x})"))})");
        var total = ranges.Aggregate(0UL, (sum, r) => sum + r.Length);
        if (total > limit)
            throw new UsageException($"--report-memory: the ranges add up to {total} bytes, more than kvmactors.cli.report-memory-limit ({limit})");
        return ranges;
    }

    /// <summary>At most this many bytes of each range go to stderr as a hex dump; the JSON report has them all.</summary>
    public const int TextDumpBytes = 4096;

    /// <summary>Each dump as 16-byte hex lines with its guest address, on <paramref name="w"/> (stderr).</summary>
    public static void WriteMemoryText(TextWriter w, IReadOnlyList<MemoryDump> dumps)
    {
        foreach (var d in dumps)
        {
            w.WriteLine($"kvmactors: memory [0x{d.Address:x}, 0x{d.Address + (ulong)d.Bytes.Length:x}):");
            var shown = Math.Min(d.Bytes.Length, TextDumpBytes);
            for (var o = 0; o < shown; o += 16)
            {
                var line = d.Bytes.AsSpan(o, Math.Min(16, shown - o));
                var ascii = new string(line.ToArray().Select(b => b is >= 0x20 and < 0x7f ? (char)b : '.').ToArray());
                w.WriteLine($"  {d.Address + (ulong)o:x8}  {string.Join(' ', line.ToArray().Select(b => b.ToString("x2")))}".PadRight(60) + ascii);
            }
            if (shown < d.Bytes.Length) w.WriteLine($"  ... {d.Bytes.Length - shown} more bytes in the --report file");
        }
    }

    private static string Hex(ulong v) => $"0x{v:x}";
}

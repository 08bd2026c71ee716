using System.Diagnostics;
using System.Net;
using System.Text.Json.Nodes;
using KvmActors.Tests.Support;
using Xunit;

namespace KvmActors.Tests.Serve;

public sealed class ServeClientTests
{
    [KvmFact]
    public async Task The_vm_cli_creates_lists_shows_prints_the_console_and_removes_with_run_like_exit_statuses()
    {
        using var s = ServeServer.Start();
        string[] Vm(params string[] a) => ["vm", "--socket", s.Socket, .. a];

        var create = Kvmactors.Run(Vm("create", "hocon/guests/seed-demo.conf", "--name", "cli-seed"));
        Assert.True(create.ExitCode == 0, create.Stderr);
        var id = create.Stdout.Trim();
        Assert.Matches("^[0-9a-f]{8}$", id);
        await s.WaitStateAsync(id, "ended");

        var list = Kvmactors.Run(Vm("list"));
        Assert.Equal(0, list.ExitCode);
        var lines = list.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.StartsWith("ID", lines[0]);
        Assert.Contains(lines, l => l.StartsWith(id) && l.Contains("cli-seed") && l.Contains("ended"));

        var show = Kvmactors.Run(Vm("show", id, "--json"));
        Assert.Equal(0, show.ExitCode);
        var vm = JsonNode.Parse(show.Stdout)!;
        Assert.Equal("Halted", (string)vm["end"]!["reason"]!);

        var console = Kvmactors.Run(Vm("console", id, "--follow"));
        Assert.Equal(0, console.ExitCode);
        Assert.Equal("4\n", console.Stdout);

        var badSet = Kvmactors.Run(Vm("create", "hocon/guests/seed-demo.conf", "--set", "guest.vcpu=2"));
        Assert.Equal(2, badSet.ExitCode);
        Assert.Contains("400 Config error", badSet.Stderr);
        Assert.Contains("key: guest.vcpu", badSet.Stderr);

        var conflict = Kvmactors.Run(Vm("pause", id));
        Assert.Equal(2, conflict.ExitCode);
        Assert.Contains("409", conflict.Stderr);

        Assert.Equal(0, Kvmactors.Run(Vm("rm", id)).ExitCode);
        var gone = Kvmactors.Run(Vm("show", id));
        Assert.Equal(2, gone.ExitCode);
        Assert.Contains("404", gone.Stderr);

        Assert.Equal(2, Kvmactors.Run(Vm("frobnicate")).ExitCode);
        var unreachable = Kvmactors.Run("vm", "--socket", Path.Combine(s.Dir, "nobody.sock"), "list");
        Assert.Equal(1, unreachable.ExitCode);
        Assert.Contains("cannot reach the server", unreachable.Stderr);
    }
}

public sealed class ServeLeakTests
{
    [KvmFact]
    public async Task Vms_created_and_ended_through_the_api_give_back_fds_mappings_and_threads()
    {
        using var s = ServeServer.Start();
        var pid = s.Process.Id;

        async Task Round(int count, int parallel)
        {
            for (int done = 0; done < count; done += parallel)
            {
                var ids = await Task.WhenAll(Enumerable.Range(0, Math.Min(parallel, count - done)).Select(async i =>
                    (string)(await s.CreateAsync(i % 3 == 2 ? ServeGuests.Failing : ServeGuests.Printing($"leak {i}\n")))["id"]!));
                foreach (var id in ids)
                {
                    await s.WaitStateAsync(id, "ended");
                    using var del = await s.Http.DeleteAsync($"vms/{id}");
                    Assert.Equal(HttpStatusCode.NoContent, del.StatusCode);
                }
            }
        }

        await Round(40, 20); // warm up: JIT, thread pool, the client's 20 pooled HTTP connections
        var (fds0, threads0, _) = Counts(pid);
        var targets0 = Targets(pid);
        await Round(160, 20);

        // Bounded poll: every VM's vCPU thread and KVM fds go with it.
        var sw = Stopwatch.StartNew();
        (int Fds, int Threads, int KvmFds) now;
        while (true)
        {
            now = Counts(pid);
            if (now.KvmFds == 0 && now.Fds <= fds0 + 4 && now.Threads <= threads0 + 12) break;
            if (sw.Elapsed > TimeSpan.FromSeconds(15))
                Assert.Fail($"after 160 VMs: fds {now.Fds} (baseline {fds0}), threads {now.Threads} (baseline {threads0}), kvm fds {now.KvmFds}; " +
                            $"new fds: {string.Join(", ", Targets(pid).Except(targets0))}");
            await Task.Delay(50);
        }
        Assert.DoesNotContain(File.ReadLines($"/proc/{pid}/maps"), l => l.Contains("kvm-vcpu"));
        var list = JsonNode.Parse(await s.Http.GetStringAsync("vms"))!.AsArray();
        Assert.Empty(list);
    }

    private static HashSet<string> Targets(int pid) =>
        Directory.GetFileSystemEntries($"/proc/{pid}/fd").Select(f =>
        {
            try { return $"{Path.GetFileName(f)}->{new FileInfo(f).LinkTarget}"; }
            catch (IOException) { return f; }
        }).ToHashSet();

    private static (int Fds, int Threads, int KvmFds) Counts(int pid)
    {
        var fds = Directory.GetFileSystemEntries($"/proc/{pid}/fd");
        var kvm = fds.Count(f =>
        {
            try { return new FileInfo(f).LinkTarget is { } t && t.StartsWith("anon_inode:kvm"); }
            catch (IOException) { return false; }
        });
        var threads = Directory.GetDirectories($"/proc/{pid}/task").Length;
        return (fds.Length, threads, kvm);
    }
}

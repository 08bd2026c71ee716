using System.Text.Json.Nodes;
using KvmActors.Tests.Support;
using Xunit;

namespace KvmActors.Tests.Host;

/// <summary>
/// kvmactors bench density prints issue 16's target-2 figures (managed heap per VM, the full-GC pause with N live VMs,
/// RSS per live VM after --cycles create/stop rounds) and where a create's time goes, each with its target, in the
/// table and the JSON. The figures' values are the benchmark's business (README "Density"); this checks they are measured.
/// </summary>
public sealed class DensityBenchTests
{
    [KvmFact]
    public void Density_prints_heap_gc_pause_cycles_and_create_stages_next_to_their_targets()
    {
        var json = Path.Combine(Path.GetTempPath(), $"kvmactors-density-{Guid.NewGuid():N}.json");
        try
        {
            var r = Kvmactors.Run(TimeSpan.FromSeconds(240), "bench", "density", "--vms", "3", "--cycles", "1", "--no-qemu", "--json", json);
            Assert.True(r.ExitCode == 0, r.Stderr);
            Assert.Contains("managed heap per live VM", r.Stdout);
            Assert.Contains("full-GC pause with 3 live VMs", r.Stdout);
            Assert.Contains("RSS per live VM after 1 create/stop cycles", r.Stdout);
            var round = JsonNode.Parse(File.ReadAllText(json))!["density"]![0]!;
            Assert.Equal(3, (int)round["vms"]!);
            Assert.True((double)round["heap_per_vm_kib"]! > 0, "three live VMs hold something on the managed heap");
            Assert.Equal(64, (double)round["heap_per_vm_target_kib"]!);
            Assert.True((double)round["gc_pause_ms"]! > 0);
            Assert.Equal(20, (double)round["gc_pause_target_ms"]!);
            var cycles = round["cycles"]!;
            Assert.Equal(1, (int)cycles["cycles"]!);
            Assert.True((double)cycles["rss_total_per_live_vm_mib"]! > 0);
            Assert.Equal(0.5, (double)cycles["rss_per_live_vm_target_mib"]!);
            var stages = round["create_stages_ms_p50"]!.AsObject();
            foreach (var stage in new[] { "admitted", "vm-thread", "kvm-vm", "vcpu-thread", "vcpus-let-go", "vcpu-resumed", "first-exit" })
                Assert.True(stages.ContainsKey(stage), $"stage {stage} missing: {stages.ToJsonString()}");
        }
        finally { File.Delete(json); }
    }

    [Fact]
    public void A_negative_cycle_count_is_a_usage_error()
    {
        var r = Kvmactors.Run("bench", "density", "--cycles", "-1");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("--cycles", r.Stderr);
    }
}

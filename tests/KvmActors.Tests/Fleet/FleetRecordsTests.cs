using KvmActors.Host.Fleet;
using KvmActors.Host.Serve;
using KvmActors.Runtime.Config;
using Xunit;

namespace KvmActors.Tests.Fleet;

/// <summary>guest.fleet.checkpoint-interval and the VM record the fleet keeps in Distributed Data.</summary>
public sealed class FleetRecordsTests
{
    private const string Guest = "guest { name = g }";

    [Fact]
    public void Checkpoint_interval_is_off_by_default_and_read_from_the_guest_or_its_sets()
    {
        Assert.Null(FleetRecords.CheckpointInterval(Guest, []));
        Assert.Null(FleetRecords.CheckpointInterval(Guest, ["guest.fleet.checkpoint-interval = off"]));
        Assert.Equal(TimeSpan.FromSeconds(5), FleetRecords.CheckpointInterval("guest { fleet { checkpoint-interval = 5s } }", []));
        Assert.Equal(TimeSpan.FromMilliseconds(500), FleetRecords.CheckpointInterval(Guest, ["guest.fleet.checkpoint-interval = 500ms"]));
    }

    [Theory]
    [InlineData("soon", "is not a duration")]
    [InlineData("10ms", "out of range")]
    [InlineData("2d", "out of range")]
    public void A_bad_checkpoint_interval_is_a_400_naming_the_key(string value, string problem)
    {
        var e = Assert.Throws<ProblemException>(() => FleetRecords.CheckpointInterval(Guest, [$"guest.fleet.checkpoint-interval = {value}"]));
        Assert.Equal(400, e.Status);
        Assert.Equal("guest.fleet.checkpoint-interval", e.Extensions["key"]);
        Assert.Contains(problem, e.Message);
    }

    [Fact]
    public void The_guest_loader_knows_the_fleet_block()
    {
        const string image = "image { inline = \"f4\" }";
        var spec = GuestConfigLoader.FromText($"guest {{ {image}\n fleet {{ checkpoint-interval = 5s }} }}", "g.conf", Path.GetTempPath());
        Assert.Equal("guest", spec.Name);
        var e = Assert.Throws<ConfigException>(() => GuestConfigLoader.FromText($"guest {{ {image}\n fleet {{ interval = 5s }} }}", "g.conf", Path.GetTempPath()));
        Assert.Equal("guest.fleet.interval", e.Key);
    }

    [Fact]
    public void A_record_round_trips_through_json_and_shows_its_checkpoint_and_recovery()
    {
        var at = DateTimeOffset.Parse("2026-12-02T01:02:03Z");
        var checkpoint = new VmCheckpoint("/shared/ab/1", at, 120);
        var record = new VmRecord("ab", Guest, "n", ["guest.vcpus=1"], TimeSpan.FromSeconds(1), "akka.tcp://kvmactors@127.0.0.1:4051#42", 1, 2 << 20,
            checkpoint, new VmRecovery(VmRecovery.RestartedFromCheckpoint, at, "akka.tcp://kvmactors@127.0.0.1:4053", checkpoint, null));
        var back = VmRecord.FromJson(record.ToJson());
        Assert.Equal(record with { Sets = back.Sets }, back);
        Assert.Equal(record.Sets, back.Sets);
        Assert.Equal("akka.tcp://kvmactors@127.0.0.1:4051", back.OwnerAddress);
        var view = back.FleetView();
        Assert.Equal("akka.tcp://kvmactors@127.0.0.1:4051", (string)view["node"]!);
        Assert.Equal(120, (long)view["checkpoint"]!["consoleOffset"]!);
        Assert.Equal("restarted-from-checkpoint", (string)view["recovery"]!["kind"]!);
        Assert.Equal(120, (long)view["recovery"]!["consoleOffset"]!);
    }
}

using Xunit;
using Akka.Actor;
using Akka.TestKit.Xunit2;
using KvmActors.Runtime.Bus;
using KvmActors.Runtime.Config;
using KvmActors.Runtime.Kvm;
using KvmActors.Runtime.Vcpu;
using KvmActors.Sdk;

namespace KvmActors.Tests.Exits;

/// <summary>
/// Exit handling driven with fake exits in a byte array: no /dev/kvm, no vCPU actor. The devices are test
/// probes only for their identity (the handler sends to them through <see cref="RecordingActions"/>).
/// </summary>
public sealed class VcpuExitHandlerTests : TestKit
{
    private const ushort Com1 = 0x3f8;
    private const ulong MmioBase = 0xd000_0000;
    private const ulong RomBase = 0xf_0000;

    private readonly IActorRef _uart;
    private readonly IActorRef _mmioDevice;
    private readonly RecordingActions _actions = new();
    private readonly VcpuProgress _progress = new();

    public VcpuExitHandlerTests()
    {
        _uart = CreateTestProbe("uart").Ref;
        _mmioDevice = CreateTestProbe("mmio").Ref;
    }

    private VcpuExitHandler Handler(UnmappedAccessPolicy policy = UnmappedAccessPolicy.Ignore, bool readSnapshots = true, VcpuProgress? progress = null) =>
        new(vcpuId: 0, vcpuCount: 1,
            PortBus.Build([new PortBus.Entry("com1", new PortRange(Com1, Com1 + 7), _uart)]),
            MmioBus.Build([new MmioBus.Entry("dev", new MmioRange(MmioBase, MmioBase + 0xfff), _mmioDevice)]),
            address => address is >= RomBase and < RomBase + 0x1_0000,
            policy, readSnapshots, progress ?? _progress, _actions);

    private static ExitResult Run(VcpuExitHandler handler, FakeExit exit)
    {
        handler.Begin(exit.View.Reason);
        return handler.Handle(exit.View);
    }

    [Fact]
    public void An_out_is_told_to_the_device_owning_the_port_with_its_offset_and_value()
    {
        var result = Run(Handler(), FakeExit.Out(Com1 + 3, 1, 0x83));

        Assert.Equal(ExitOutcome.Done, result.Outcome);
        var (device, access) = Assert.Single(_actions.Sent);
        Assert.Equal(_uart, device);
        Assert.Equal(new PortWrite(Com1 + 3, 3, 1, 0x83, 0), access);
        Assert.False(_progress.ExitPending);
        Assert.Equal(1, _progress.ExitsByPort[Com1 + 3]);
    }

    [Fact]
    public void Byte_outs_of_the_same_value_to_a_port_tell_one_immutable_message_and_others_their_own()
    {
        var handler = Handler();
        Run(handler, FakeExit.Out(Com1, 1, (byte)'x'));
        Run(handler, FakeExit.Out(Com1 + 7, 1, 0x5a));
        Run(handler, FakeExit.Out(Com1, 1, (byte)'x'));
        Run(handler, FakeExit.Out(Com1, 1, (byte)'y'));

        var sent = _actions.Sent.Select(s => Assert.IsType<PortWrite>(s.Access)).ToList();
        Assert.Equal(new PortWrite(Com1, 0, 1, 'x', 0), sent[0]);
        Assert.Equal(new PortWrite(Com1 + 7, 7, 1, 0x5a, 0), sent[1]);
        Assert.Same(sent[0], sent[2]); // the same message again: nothing allocated
        Assert.Equal(new PortWrite(Com1, 0, 1, 'y', 0), sent[3]);

        // Rerouted, the same port may be another offset of another range: the message says so.
        var other = CreateTestProbe("other").Ref;
        handler.Reroute(PortBus.Build([new PortBus.Entry("wide", new PortRange(Com1 - 8, Com1 + 7), other)]), MmioBus.Build([]));
        Run(handler, FakeExit.Out(Com1, 1, (byte)'x'));
        Assert.Equal((other, (object)new PortWrite(Com1, 8, 1, 'x', 0)), _actions.Sent[4]);
    }

    [Fact]
    public void An_out_to_a_device_whose_writes_are_awaited_waits_for_each_item_and_reroute_changes_the_target()
    {
        var bridge = CreateTestProbe("bridge").Ref;
        var moved = CreateTestProbe("moved").Ref;
        var handler = Handler();
        handler.Reroute(
            PortBus.Build([new PortBus.Entry("pci", new PortRange(0xcf8, 0xcff), bridge, WaitForWrites: true)]),
            MmioBus.Build([new MmioBus.Entry("bar", new MmioRange(MmioBase, MmioBase + 0xfff), moved)]));
        var exit = FakeExit.Out(0xcfc, 1, 0x11, 0x22); // rep outsb: two items

        Assert.Equal(ExitOutcome.AwaitingRead, Run(handler, exit).Outcome);
        var first = Assert.IsType<PortWrite>(Assert.Single(_actions.Sent).Access);
        Assert.Equal(new PortWrite(0xcfc, 4, 1, 0x11, 0, first.Seq), first);
        Assert.NotEqual(0, first.Seq);
        Assert.Equal(ExitOutcome.AwaitingRead, handler.CompleteRead(exit.View, 0).Outcome);
        var second = Assert.IsType<PortWrite>(_actions.Sent[1].Access);
        Assert.Equal(0x22u, second.Value);
        Assert.Equal(ExitOutcome.Done, handler.CompleteRead(exit.View, 0xff).Outcome);
        Assert.Equal([0x11, 0x22], exit.IoData(2)); // an OUT's bytes are not overwritten by the answer
        Assert.False(_progress.ExitPending);

        Assert.Equal(ExitOutcome.Done, Run(handler, FakeExit.Out(Com1, 1, 0x41)).Outcome); // COM1 is not on the new bus
        Assert.Equal(2, _actions.Sent.Count);
        Run(handler, FakeExit.Mmio(MmioBase + 8, 4, isWrite: true, 7));
        Assert.Equal(moved, _actions.Sent[2].Device);
    }

    [Fact]
    public void An_in_is_sent_as_a_read_and_its_answer_lands_in_the_run_area()
    {
        var handler = Handler(readSnapshots: false);
        var exit = FakeExit.In(Com1 + 5, 1);

        Assert.Equal(ExitOutcome.AwaitingRead, Run(handler, exit).Outcome);
        var read = Assert.IsType<PortRead>(Assert.Single(_actions.Sent).Access);
        Assert.Equal((ushort)(Com1 + 5), read.Port);
        Assert.Equal((ushort)5, read.Offset);
        Assert.True(_progress.ReadInFlight);
        Assert.True(_progress.ExitPending);

        Assert.Equal(ExitOutcome.Done, handler.CompleteRead(exit.View, 0x60).Outcome);
        Assert.Equal([0x60], exit.IoData(1));
        Assert.False(_progress.ReadInFlight);
        Assert.False(_progress.ExitPending);
    }

    [Fact]
    public void A_rep_outsb_tells_every_item_and_a_resumed_exit_sends_only_the_items_not_yet_delivered()
    {
        var exit = FakeExit.Out(Com1, 1, "abcd"u8.ToArray());
        Assert.Equal(ExitOutcome.Done, Run(Handler(), exit).Outcome);
        Assert.Equal("abcd", string.Concat(_actions.Sent.Select(s => (char)((PortWrite)s.Access).Value)));

        // A restart in the middle of the exit: two items were delivered before the actor failed.
        _actions.Sent.Clear();
        var progress = new VcpuProgress();
        var handler = Handler(progress: progress);
        handler.Begin(KvmExitReason.Io);
        progress.ItemsDone = 2;
        Assert.Equal(ExitOutcome.Done, Handler(progress: progress).Resume(exit.View).Outcome);
        Assert.Equal("cd", string.Concat(_actions.Sent.Select(s => (char)((PortWrite)s.Access).Value)));
    }

    [Fact]
    public void A_rep_insb_reads_item_by_item_each_with_a_new_sequence_number()
    {
        var handler = Handler(readSnapshots: false);
        var exit = FakeExit.In(Com1, 1, count: 3);

        Assert.Equal(ExitOutcome.AwaitingRead, Run(handler, exit).Outcome);
        Assert.Equal(ExitOutcome.AwaitingRead, handler.CompleteRead(exit.View, (byte)'x').Outcome);
        Assert.Equal(ExitOutcome.AwaitingRead, handler.CompleteRead(exit.View, (byte)'y').Outcome);
        Assert.Equal(ExitOutcome.Done, handler.CompleteRead(exit.View, (byte)'z').Outcome);

        Assert.Equal("xyz"u8.ToArray(), exit.IoData(3));
        Assert.Equal([1L, 2L, 3L], _actions.Sent.Select(s => ((PortRead)s.Access).Seq));
        Assert.Equal(3u, _progress.ItemsDone);
    }

    [Fact]
    public void A_restarted_handler_rebuilds_the_read_in_flight_from_the_run_area_and_sends_nothing_again()
    {
        var exit = FakeExit.In(Com1, 2, count: 2);
        Assert.Equal(ExitOutcome.AwaitingRead, Run(Handler(readSnapshots: false), exit).Outcome);
        Assert.Single(_actions.Sent);

        // The actor failed while the read was out; its successor gets the same progress and kvm_run.
        var successor = Handler(readSnapshots: false);
        Assert.Equal(ExitOutcome.AwaitingRead, successor.Resume(exit.View).Outcome);
        Assert.Single(_actions.Sent); // the answer to the read already sent is awaited, not a new read

        Assert.Equal(ExitOutcome.AwaitingRead, successor.CompleteRead(exit.View, 0x1234).Outcome);
        var second = Assert.IsType<PortRead>(_actions.Sent[^1].Access);
        Assert.Equal(2, second.Size);
        Assert.Equal(ExitOutcome.Done, successor.CompleteRead(exit.View, 0x5678).Outcome);
        Assert.Equal([0x34, 0x12, 0x78, 0x56], exit.IoData(4));
    }

    [Fact]
    public void An_in_from_a_register_in_the_devices_read_snapshot_is_answered_without_a_round_trip()
    {
        DeviceReadPath.Of(_uart, 1).Publish(new ReadSnapshot(1UL << 5, [0, 0, 0, 0, 0, 0x60], 1 << 1));
        var exit = FakeExit.In(Com1 + 5, 1, count: 2);

        Assert.Equal(ExitOutcome.Done, Run(Handler(), exit).Outcome);
        Assert.Empty(_actions.Sent);
        Assert.Equal([0x60, 0x60], exit.IoData(2));

        // A write not yet handled by the device: the next read must ask it.
        Run(Handler(), FakeExit.Out(Com1, 1, 0x41));
        Assert.Equal(ExitOutcome.AwaitingRead, Run(Handler(), FakeExit.In(Com1 + 5, 1)).Outcome);
    }

    [Fact]
    public void Unmapped_ports_read_all_ones_and_drop_writes_and_are_reported_once_per_port_block_when_ignored()
    {
        var handler = Handler();
        var read = FakeExit.In(0x80, 2, count: 2);
        Assert.Equal(ExitOutcome.Done, Run(handler, read).Outcome);
        Assert.Equal([0xff, 0xff, 0xff, 0xff], read.IoData(4));
        Assert.Equal(ExitOutcome.Done, Run(handler, FakeExit.Out(0x81, 1, 0x12)).Outcome);
        Assert.Equal(ExitOutcome.Done, Run(handler, FakeExit.Out(0x90, 1, 0x12)).Outcome);

        Assert.Empty(_actions.Sent);
        Assert.Equal([0x80UL, 0x90UL], _actions.Unmapped.Select(u => u.Address));
        Assert.Equal(3, _progress.Unmapped.Total);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void An_unmapped_port_access_fails_the_guest_in_strict_mode(bool isWrite)
    {
        var exit = isWrite ? FakeExit.Out(0x80, 1, 0) : FakeExit.In(0x80, 1);
        var result = Run(Handler(UnmappedAccessPolicy.Strict), exit);

        Assert.Equal(ExitOutcome.Failed, result.Outcome);
        Assert.Equal(KvmExitReason.Io, result.FailedExit);
        Assert.Equal($"{(isWrite ? "write to" : "read from")} unmapped port 0x80 (1 bytes) in strict mode", result.Explanation);
        Assert.False(_progress.ExitPending);
    }

    [Fact]
    public void An_mmio_write_is_told_with_its_offset_and_an_mmio_read_is_answered_into_the_data()
    {
        var handler = Handler();
        Assert.Equal(ExitOutcome.Done, Run(handler, FakeExit.Mmio(MmioBase + 0x10, 4, isWrite: true, 0xdeadbeef)).Outcome);
        Assert.Equal(new MmioWrite(MmioBase + 0x10, 0x10, 4, 0xdeadbeef, 0), Assert.Single(_actions.Sent).Access);

        var read = FakeExit.Mmio(MmioBase + 0x20, 8, isWrite: false);
        Assert.Equal(ExitOutcome.AwaitingRead, Run(handler, read).Outcome);
        var access = Assert.IsType<MmioRead>(_actions.Sent[^1].Access);
        Assert.Equal((0x20UL, 8), (access.Offset, access.Size));
        Assert.Equal(ExitOutcome.Done, handler.CompleteRead(read.View, 0x0102030405060708).Outcome);
        Assert.Equal(0x0102030405060708UL, read.MmioData);
    }

    [Fact]
    public void Unmapped_mmio_reads_all_ones_when_ignored_and_fails_the_guest_in_strict_mode()
    {
        var read = FakeExit.Mmio(0xe000_0000, 4, isWrite: false, value: 0x12345678);
        Assert.Equal(ExitOutcome.Done, Run(Handler(), read).Outcome);
        Assert.Equal(0xffff_ffffUL, read.MmioData & 0xffff_ffff);

        var strict = Run(Handler(UnmappedAccessPolicy.Strict), FakeExit.Mmio(0xe000_0000, 4, isWrite: true));
        Assert.Equal(ExitOutcome.Failed, strict.Outcome);
        Assert.Equal(KvmExitReason.Mmio, strict.FailedExit);
        Assert.Contains("write to unmapped MMIO address 0xe0000000", strict.Explanation);
    }

    [Theory]
    [InlineData(UnmappedAccessPolicy.Ignore)]
    [InlineData(UnmappedAccessPolicy.Strict)]
    public void A_write_to_rom_is_dropped_in_every_mode(UnmappedAccessPolicy policy)
    {
        var result = Run(Handler(policy), FakeExit.Mmio(RomBase + 0x100, 1, isWrite: true, 0x55));

        Assert.Equal(ExitOutcome.Done, result.Outcome);
        Assert.Empty(_actions.Sent);
        Assert.Empty(_actions.Unmapped);
    }

    [Fact]
    public void Hlt_halts_and_an_interrupted_run_is_just_done()
    {
        Assert.Equal(ExitOutcome.Halted, Run(Handler(), FakeExit.Of(KvmExitReason.Hlt)).Outcome);
        Assert.False(_progress.ExitPending);
        Assert.Equal(ExitOutcome.Done, Run(Handler(), FakeExit.Of(KvmExitReason.Intr)).Outcome);
        Assert.Equal(1, _progress.ExitsByReason[(int)KvmExitReason.Hlt]);
    }

    [Fact]
    public void Failure_exits_are_explained_from_their_fields()
    {
        Assert.Equal("the guest shut the vCPU down (triple fault)", Failed(FakeExit.Of(KvmExitReason.Shutdown)));
        Assert.Equal("VM entry failed: hardware_entry_failure_reason 0x80000021",
            Failed(FakeExit.Of(KvmExitReason.FailEntry).U64(KvmRunLayout.FailEntryReason, 0x80000021)));
        Assert.Equal("KVM internal error: suberror 1 (instruction emulation failed)",
            Failed(FakeExit.Of(KvmExitReason.InternalError).U32(KvmRunLayout.InternalSuberror, 1)));
        Assert.Equal("KVM internal error: suberror 3",
            Failed(FakeExit.Of(KvmExitReason.InternalError).U32(KvmRunLayout.InternalSuberror, 3)));
        Assert.Equal("unknown exit: hardware_exit_reason 0x7b",
            Failed(FakeExit.Of(KvmExitReason.Unknown).U64(KvmRunLayout.HwExitReason, 0x7b)));
        Assert.Equal("unhandled exit reason 99", Failed(FakeExit.Of((KvmExitReason)99)));
    }

    private string Failed(FakeExit exit)
    {
        var result = Run(Handler(), exit);
        Assert.Equal(ExitOutcome.Failed, result.Outcome);
        Assert.Equal(exit.View.Reason, result.FailedExit);
        return result.Explanation!;
    }

    [Fact]
    public void Walking_every_unmapped_mmio_page_keeps_the_bookkeeping_and_the_reports_bounded()
    {
        var handler = Handler();
        const int pages = 100_000;
        for (ulong page = 0; page < pages; page++)
            Run(handler, FakeExit.Mmio(0x1_0000_0000 + page * 4096 + page % 4096, 1, isWrite: page % 2 == 0));

        Assert.Equal(pages, _progress.Unmapped.Total);
        Assert.Equal(VcpuExitHandler.UnmappedLogCapacity, _progress.Unmapped.Entries);
        Assert.Equal(VcpuExitHandler.UnmappedLogCapacity + 1, _actions.Unmapped.Count);
        Assert.True(_actions.Unmapped[^1].LogFull);
        Assert.Equal(pages - VcpuExitHandler.UnmappedLogCapacity, _progress.Unmapped.NotRecorded);
    }
}

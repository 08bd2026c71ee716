using Akka.Actor;
using Akka.Configuration;
using Akka.TestKit.Xunit2;
using KvmActors.Devices.Uart16550;
using KvmActors.Runtime.Bus;
using KvmActors.Sdk;
using KvmActors.Runtime.Config;
using KvmActors.Runtime.Devices;
using KvmActors.Runtime.Vm;
using KvmActors.Tests.Support;
using Xunit;
using Xunit.Abstractions;
using static Iced.Intel.AssemblerRegisters;

namespace KvmActors.Tests.Runtime;

/// <summary>The rule of <see cref="DeviceReadPath"/>: when a vCPU may answer an IN from a device's read snapshot.</summary>
public sealed class ReadPathRuleTests
{
    private static ReadSnapshot Snapshot(ulong valid, int sizes, params ulong[] values) => new(valid, values, sizes);

    [Fact]
    public void Without_a_snapshot_every_read_is_a_round_trip()
    {
        var path = new DeviceReadPath();
        Assert.False(path.TryRead(0, 5, 1, out _));
    }

    [Fact]
    public void A_snapshot_answers_only_its_valid_offsets_and_access_sizes_masked_to_the_width()
    {
        var path = new DeviceReadPath();
        path.Publish(Snapshot(valid: 0b1010_0000, sizes: (1 << 1) | (1 << 2), 0, 0, 0, 0, 0, 0x1_60, 0, 0xa5));

        Assert.True(path.TryRead(0, 5, 1, out var lsr));
        Assert.Equal(0x60UL, lsr);
        Assert.True(path.TryRead(0, 5, 2, out var wide));
        Assert.Equal(0x160UL, wide);
        Assert.True(path.TryRead(0, 7, 1, out var scr));
        Assert.Equal(0xa5UL, scr);
        Assert.False(path.TryRead(0, 0, 1, out _));  // not valid (a read with a side effect)
        Assert.False(path.TryRead(0, 5, 4, out _));  // width not answered
        Assert.False(path.TryRead(0, 9, 1, out _));  // past the snapshot
        Assert.False(path.TryRead(0, 70, 1, out _)); // past any snapshot
    }

    [Fact]
    public void A_write_of_this_vcpu_not_yet_handled_forces_the_round_trip()
    {
        var path = new DeviceReadPath();
        path.Publish(Snapshot(1 << 7, 1 << 1, 0, 0, 0, 0, 0, 0, 0, 0x11));

        path.WriteSending(0);
        Assert.False(path.TryRead(0, 7, 1, out _));
        path.WriteSending(0);
        path.WriteHandled(0);
        Assert.False(path.TryRead(0, 7, 1, out _)); // one of two still in flight
        path.WriteHandled(0);
        Assert.True(path.TryRead(0, 7, 1, out var v));
        Assert.Equal(0x11UL, v);
    }

    [Fact]
    public void A_write_of_another_vcpu_not_yet_handled_forces_the_round_trip_too()
    {
        // vCPU 3 wrote and may have told vCPU 0 so through guest memory: vCPU 0 must not read past that write.
        var path = new DeviceReadPath();
        path.Publish(Snapshot(1 << 7, 1 << 1, 0, 0, 0, 0, 0, 0, 0, 0x11));
        path.WriteSending(3);
        Assert.False(path.TryRead(0, 7, 1, out _));
        path.WriteHandled(3);
        Assert.True(path.TryRead(0, 7, 1, out _));
    }

    [Fact]
    public void An_invalidated_path_answers_nothing_until_the_device_publishes_again()
    {
        var path = new DeviceReadPath();
        path.Publish(Snapshot(1 << 7, 1 << 1, 0, 0, 0, 0, 0, 0, 0, 0x11));
        path.Invalidate();
        Assert.False(path.TryRead(0, 7, 1, out _));
        path.Publish(Snapshot(1 << 7, 1 << 1, 0, 0, 0, 0, 0, 0, 0, 0x22));
        Assert.True(path.TryRead(0, 7, 1, out var v));
        Assert.Equal(0x22UL, v);
    }

    [Fact]
    public void Reads_are_counted_as_answered_from_the_snapshot_or_not()
    {
        var path = new DeviceReadPath();
        path.TryRead(1, 7, 1, out _);          // no snapshot yet: round trip
        path.Publish(Snapshot(1 << 7, 1 << 1, 0, 0, 0, 0, 0, 0, 0, 0x11));
        path.TryRead(1, 7, 1, out _);          // snapshot
        path.WriteSending(2);
        path.TryRead(2, 7, 1, out _);          // a write in flight: round trip
        path.WriteHandled(2);
        path.TryRead(2, 7, 1, out _);          // snapshot
        Assert.Equal((2L, 2L), path.ReadCounts);
    }

    [Fact]
    public void A_read_that_may_wait_gets_the_snapshot_published_after_another_vcpus_write_never_the_one_before()
    {
        var path = new DeviceReadPath(4);
        path.Publish(Snapshot(1 << 7, 1 << 1, 0, 0, 0, 0, 0, 0, 0, 0x11));
        path.WriteSending(3);
        long handledAt = 0;
        // The device, on another thread: the registers after the write, then the write counted as handled.
        var device = new Thread(() =>
        {
            Thread.Sleep(20);
            path.Publish(Snapshot(1 << 7, 1 << 1, 0, 0, 0, 0, 0, 0, 0, 0x22));
            Volatile.Write(ref handledAt, System.Diagnostics.Stopwatch.GetTimestamp());
            path.WriteHandled(3);
        });
        device.Start();
        var readAt = System.Diagnostics.Stopwatch.GetTimestamp();
        var answered = path.TryRead(0, 7, 1, out var value, waitTicks: 10 * System.Diagnostics.Stopwatch.Frequency);
        device.Join();

        Assert.True(answered);
        Assert.Equal(0x22UL, value);
        // It waited when the write was handled after the read began (else there was nothing to wait for).
        Assert.Equal(Volatile.Read(ref handledAt) > readAt ? 1L : 0L, path.WaitedReads);
        Assert.Equal((1L, 0L), path.ReadCounts);
    }

    [Fact]
    public void A_read_whose_wait_runs_out_is_a_round_trip_and_waits_no_longer_than_it_may()
    {
        var path = new DeviceReadPath(4);
        path.Publish(Snapshot(1 << 7, 1 << 1, 0, 0, 0, 0, 0, 0, 0, 0x11));
        path.WriteSending(2); // never handled
        var wait = System.Diagnostics.Stopwatch.Frequency / 1000; // 1 ms
        var started = System.Diagnostics.Stopwatch.GetTimestamp();

        Assert.False(path.TryRead(0, 7, 1, out _, waitTicks: wait));
        Assert.True(System.Diagnostics.Stopwatch.GetTimestamp() - started >= wait);
        Assert.Equal((0L, 1L), path.ReadCounts);
        Assert.Equal(0L, path.WaitedReads);
        Assert.False(path.TryRead(0, 6, 1, out _, waitTicks: wait)); // an offset the snapshot lacks: a round trip anyway
    }
}

/// <summary>What the UART actor publishes: every register whose read has no effect, and none whose read has one.</summary>
public sealed class UartReadSnapshotTests(ITestOutputHelper output) : TestKit(KvmActorsConfig.WithDefaults(), output: output)
{
    private const ushort Base = 0x3f8;
    private long _seq;

    private (IActorRef Uart, DeviceReadPath Path) Start()
    {
        var context = new DeviceContext
        {
            Name = "com1", Type = "uart-16550",
            Options = new DeviceOptions(ConfigurationFactory.ParseString("sink = null"), "guest.devices.com1.options", "test.conf", Path.GetTempPath()),
            Vm = CreateTestProbe().Ref, Machine = new MachineInfo(1, 1 << 20, []),
        };
        var uart = Sys.ActorOf(DeviceRegistry.PropsFor(typeof(Uart16550Device), context).WithDispatcher(DeviceDispatcher.ConfigPath));
        return (uart, DeviceReadPath.Of(uart));
    }

    // A round-trip read: when its answer is here, the snapshot that followed it has been published.
    private ulong Read(IActorRef uart, int offset)
    {
        var seq = ++_seq;
        uart.Tell(new PortRead((ushort)(Base + offset), (ushort)offset, 1, 0, seq), TestActor);
        return ExpectMsg<ReadCompleted>(m => m.Seq == seq).Value;
    }

    // A write as a vCPU sends it: counted first.
    private static void Write(IActorRef uart, DeviceReadPath path, int offset, uint value)
    {
        path.WriteSending(0);
        uart.Tell(new PortWrite((ushort)(Base + offset), (ushort)offset, 1, value, 0));
    }

    private static ulong? Fast(DeviceReadPath path, int offset, int size = 1) =>
        path.TryRead(0, (ulong)offset, size, out var v) ? v : null;

    [Fact]
    public void An_idle_uart_publishes_its_registers_but_never_RBR()
    {
        var (uart, path) = Start();
        Write(uart, path, UartReg.Scr, 0x5a);
        Read(uart, UartReg.Lsr);

        Assert.Equal(0x5aUL, Fast(path, UartReg.Scr));
        Assert.Equal(0x60UL, Fast(path, UartReg.Lsr));
        Assert.Equal(0x60UL, Fast(path, UartReg.Lsr, 2)); // a wider read: the register, zeros above
        Assert.Equal(0x01UL, Fast(path, UartReg.Iir));    // no interrupt pending
        Assert.Equal((ulong)Uart16550.DefaultModemInputs, Fast(path, UartReg.Msr));
        Assert.Null(Fast(path, UartReg.Rbr));             // a read pops the RX FIFO
    }

    [Fact]
    public void The_snapshot_follows_the_writes_and_DLAB_selects_the_divisor()
    {
        var (uart, path) = Start();
        Write(uart, path, UartReg.Lcr, 0x80);
        Write(uart, path, UartReg.Dll, 0x0c);
        Write(uart, path, UartReg.Dlm, 0x01);
        Read(uart, UartReg.Lsr);
        Assert.Equal(0x0cUL, Fast(path, UartReg.Dll));
        Assert.Equal(0x01UL, Fast(path, UartReg.Dlm));
        Assert.Equal(0x80UL, Fast(path, UartReg.Lcr));

        Write(uart, path, UartReg.Lcr, 0x03);
        Write(uart, path, UartReg.Ier, 0x05);
        Read(uart, UartReg.Lsr);
        Assert.Equal(0x05UL, Fast(path, UartReg.Ier));
        Assert.Null(Fast(path, UartReg.Rbr));
    }

    [Fact]
    public void LSR_with_error_bits_is_left_out_until_a_read_clears_them()
    {
        var (uart, path) = Start();
        Write(uart, path, UartReg.Mcr, UartMcr.Loopback);
        Write(uart, path, UartReg.Lcr, UartLcr.Break); // a break, looped back: BI in LSR, cleared by reading LSR
        Read(uart, UartReg.Scr);
        Assert.Null(Fast(path, UartReg.Lsr));

        var lsr = Read(uart, UartReg.Lsr);
        Assert.NotEqual(0UL, lsr & UartLsr.Break);
        Assert.NotNull(Fast(path, UartReg.Lsr)); // read once: the error bits are gone, the read is effect-free again
        Assert.Equal(0UL, Fast(path, UartReg.Lsr)!.Value & UartLsr.Errors);
    }

    [Fact]
    public void MSR_with_delta_bits_and_IIR_reporting_THRE_are_left_out_until_read()
    {
        var (uart, path) = Start();
        Write(uart, path, UartReg.Mcr, UartMcr.Loopback); // the modem inputs change: delta bits
        Write(uart, path, UartReg.Ier, UartIer.ThrEmpty); // THRE interrupt, cleared by reading IIR
        Read(uart, UartReg.Scr);
        Assert.Null(Fast(path, UartReg.Msr));
        Assert.Null(Fast(path, UartReg.Iir));

        Read(uart, UartReg.Msr);
        Read(uart, UartReg.Iir);
        Assert.Equal(0UL, Fast(path, UartReg.Msr)!.Value & UartMsr.Deltas);
        Assert.Equal((ulong)UartIir.NoInterrupt, Fast(path, UartReg.Iir)!.Value & UartIir.IdMask);
    }

    [Fact]
    public void A_written_value_is_not_answered_from_the_snapshot_before_the_device_handled_it()
    {
        var (uart, path) = Start();
        Write(uart, path, UartReg.Scr, 0x11);
        Read(uart, UartReg.Scr);
        Assert.Equal(0x11UL, Fast(path, UartReg.Scr));

        path.WriteSending(0); // a write on its way, not yet in the device's mailbox
        Assert.Null(Fast(path, UartReg.Scr));
        uart.Tell(new PortWrite(Base + UartReg.Scr, UartReg.Scr, 1, 0x22, 0));
        AwaitAssert(() => Assert.Equal(0x22UL, Fast(path, UartReg.Scr)));
    }
}

/// <summary>The device dispatcher: an idle device handles a vCPU thread's message on that thread, inside the Tell.</summary>
public sealed class DeviceDispatcherTests(ITestOutputHelper output) : TestKit(KvmActorsConfig.WithDefaults(), output: output)
{
    private sealed class ThreadRecorder : UntypedActor
    {
        public static int LastThread;
        public static int Handled;

        protected override void OnReceive(object message)
        {
            Volatile.Write(ref LastThread, Environment.CurrentManagedThreadId);
            Interlocked.Increment(ref Handled);
        }
    }

    private IActorRef StartRecorder()
    {
        var device = Sys.ActorOf(Props.Create(() => new ThreadRecorder()).WithDispatcher(DeviceDispatcher.ConfigPath));
        device.Tell(new Identify(1), TestActor);
        ExpectMsg<ActorIdentity>(); // started and idle
        return device;
    }

    [Fact]
    public void From_a_vcpu_thread_an_idle_device_runs_inside_the_tell()
    {
        var device = StartRecorder();
        var inline = false;
        var t = new Thread(() =>
        {
            DeviceDispatcher.RunDevicesOnThisThread();
            var thread = Environment.CurrentManagedThreadId;
            // The pool thread that answered Identify may not have let go of the mailbox yet: then the message
            // just queues behind it. Try until the device is idle when told.
            for (var attempt = 0; attempt < 100 && !inline; attempt++)
            {
                var before = Volatile.Read(ref ThreadRecorder.Handled);
                device.Tell("access");
                inline = Volatile.Read(ref ThreadRecorder.Handled) == before + 1 // handled before Tell returned
                         && Volatile.Read(ref ThreadRecorder.LastThread) == thread; // on the sender's thread
                if (!inline) Thread.Sleep(10);
            }
        });
        t.Start();
        t.Join();
        Assert.True(inline);
    }

    [Fact]
    public void The_dispatcher_hands_mailboxes_the_throughput_of_its_config()
    {
        var configured = Sys.Settings.Config.GetInt(DeviceDispatcher.ConfigPath + ".throughput");
        Assert.Equal(configured, Sys.Dispatchers.Lookup(DeviceDispatcher.ConfigPath).Throughput);
        Assert.NotEqual(Akka.Dispatch.MessageDispatcher.DefaultThroughput, configured); // else the test shows nothing
    }

    [Fact]
    public void From_any_other_thread_the_device_runs_on_the_thread_pool()
    {
        var device = StartRecorder();
        var before = Volatile.Read(ref ThreadRecorder.Handled);
        var thread = 0;
        var t = new Thread(() =>
        {
            thread = Environment.CurrentManagedThreadId;
            device.Tell("access");
        });
        t.Start();
        t.Join();
        AwaitAssert(() => Assert.Equal(before + 1, Volatile.Read(ref ThreadRecorder.Handled)));
        Assert.NotEqual(thread, Volatile.Read(ref ThreadRecorder.LastThread));
    }
}

/// <summary>The fast exit path on /dev/kvm: reads answered without a round trip still see every write before them.</summary>
public sealed class FastPathKvmTests(ITestOutputHelper output) : KvmTestKit(output)
{
    private static string Conf(byte[] image, string sink, string extra = "") => $$"""
        guest {
          name = fastpath
          image {
            inline = "{{Guests.Hex(image)}}"
            load-address = 0x1000
          }
          cpu.registers.rip = 0x1000
          devices.com1.options.sink = "{{sink}}"
          {{extra}}
        }
        """;

    private byte[] SinkBytes(string sink) => HostIo.For(Sys).Memory(sink).Bytes;

    // The VM's UART actor, once the VM has created it.
    private IActorRef Com1(IActorRef vm)
    {
        IActorRef? found = null;
        AwaitAssert(() =>
        {
            var id = Sys.ActorSelection(vm.Path / "device-com1").Ask<ActorIdentity>(new Identify(null), TimeSpan.FromSeconds(3)).Result;
            found = id.Subject;
            Assert.NotNull(found);
        }, TimeSpan.FromSeconds(15));
        return found!;
    }

    [KvmFact]
    public void Each_read_after_a_write_sees_the_written_value()
    {
        // for v in 0..255: SCR = v; read SCR; print it
        var image = Guests.Assemble(16, 0x1000, a =>
        {
            var loop = a.CreateLabel();
            a.xor(cx, cx);
            a.Label(ref loop);
            a.mov(dx, 0x3ff);
            a.mov(al, cl);
            a.@out(dx, al);
            a.@in(al, dx);
            a.mov(dx, 0x3f8);
            a.@out(dx, al);
            a.inc(cl);
            a.jnz(loop);
            a.hlt();
        });
        var sink = SinkName();
        var ended = Run(Guest(Conf(image, "memory:" + sink)));

        Assert.Equal(VmEndReason.Halted, ended.Reason);
        Assert.Equal(Enumerable.Range(0, 256).Select(i => (byte)i), SinkBytes(sink));
    }

    [KvmFact]
    public void A_write_that_changes_LSR_is_seen_by_the_next_LSR_read()
    {
        // Loopback on; THR = 'A' lands in the RX FIFO: LSR gains DR. Read LSR, RBR (pops), LSR; loopback off; print.
        var image = Guests.Assemble(16, 0x1000, a =>
        {
            a.mov(dx, 0x3fc); a.mov(al, UartMcr.Loopback); a.@out(dx, al);
            a.mov(dx, 0x3f8); a.mov(al, (byte)'A'); a.@out(dx, al);
            a.mov(dx, 0x3fd); a.@in(al, dx); a.mov(bl, al);
            a.mov(dx, 0x3f8); a.@in(al, dx); a.mov(bh, al);
            a.mov(dx, 0x3fd); a.@in(al, dx); a.mov(cl, al);
            a.mov(dx, 0x3fc); a.mov(al, 0); a.@out(dx, al);
            a.mov(dx, 0x3f8);
            a.mov(al, bl); a.@out(dx, al);
            a.mov(al, bh); a.@out(dx, al);
            a.mov(al, cl); a.@out(dx, al);
            a.hlt();
        });
        var sink = SinkName();
        var ended = Run(Guest(Conf(image, "memory:" + sink)));

        Assert.Equal(VmEndReason.Halted, ended.Reason);
        Assert.Equal([0x61, (byte)'A', 0x60], SinkBytes(sink));
    }

    [KvmFact]
    public void A_read_on_one_vcpu_sees_a_write_another_vcpu_made_before_telling_it_so()
    {
        // vCPU 1: for k in 1..255: SCR = k; [0x2000] = k; wait for [0x2002] == k.
        // vCPU 0: for k in 1..255: wait for [0x2000] == k; read SCR; count a mismatch at [0x2004]; [0x2002] = k.
        // Then vCPU 0 prints the mismatch count.
        var image = Guests.Assemble(16, 0x1000, a =>
        {
            var reader = a.CreateLabel();
            var wLoop = a.CreateLabel();
            var wWait = a.CreateLabel();
            var ok = a.CreateLabel();
            a.mov(cl, 1);
            a.test(si, si);
            a.jz(reader);
            a.Label(ref wLoop);
            a.mov(dx, 0x3ff); a.mov(al, cl); a.@out(dx, al);
            a.mov(__byte_ptr[0x2000], cl);
            a.Label(ref wWait);
            a.cmp(__byte_ptr[0x2002], cl);
            a.jne(wWait);
            a.inc(cl);
            a.jnz(wLoop);
            a.hlt();
            a.Label(ref reader);
            a.cmp(__byte_ptr[0x2000], cl);
            a.jne(reader);
            a.mov(dx, 0x3ff); a.@in(al, dx);
            a.cmp(al, cl);
            a.je(ok);
            a.inc(__byte_ptr[0x2004]);
            a.Label(ref ok);
            a.mov(__byte_ptr[0x2002], cl);
            a.inc(cl);
            a.jnz(reader);
            a.mov(al, __byte_ptr[0x2004]);
            a.mov(dx, 0x3f8); a.@out(dx, al);
            a.hlt();
        });
        var sink = SinkName();
        var ended = Run(Guest(Conf(image, "memory:" + sink, "vcpus = 2\nvcpu-overrides.\"1\".registers.rsi = 1")), TimeSpan.FromSeconds(60));

        Assert.Equal(VmEndReason.Halted, ended.Reason);
        Assert.Equal([0], SinkBytes(sink));
    }

    [KvmFact]
    public void Polling_LSR_is_answered_from_the_snapshot()
    {
        // 2000 LSR reads, then spin without exits until stopped.
        var image = Guests.Assemble(16, 0x1000, a =>
        {
            var loop = a.CreateLabel();
            var spin = a.CreateLabel();
            a.mov(cx, 2000);
            a.mov(dx, 0x3fd);
            a.Label(ref loop);
            a.@in(al, dx);
            a.dec(cx);
            a.jnz(loop);
            a.Label(ref spin);
            a.jmp(spin);
        });
        var (vm, owner) = Start(Guest(Conf(image, "null")));
        Watch(vm);
        var path = DeviceReadPath.Of(Com1(vm));
        AwaitAssert(() => Assert.Equal(2000, path.ReadCounts.Fast + path.ReadCounts.Slow), TimeSpan.FromSeconds(20));
        Assert.True(path.ReadCounts.Fast >= 1999, $"{path.ReadCounts.Fast} of 2000 LSR reads answered from the snapshot");

        vm.Tell(new StopVm("test"));
        Assert.Equal(VmEndReason.StoppedOnRequest, owner.ExpectMsg<VmEnded>(TimeSpan.FromSeconds(10)).Reason);
        ExpectTerminated(vm);
    }

    [KvmFact]
    public void A_stop_request_ends_a_guest_that_exits_without_pause()
    {
        // OUT to COM1 for ever: the vCPU handles exit after exit in one message and must still see the stop.
        var image = Guests.Assemble(16, 0x1000, a =>
        {
            var loop = a.CreateLabel();
            a.mov(dx, 0x3f8);
            a.Label(ref loop);
            a.@out(dx, al);
            a.jmp(loop);
        });
        var sink = SinkName();
        var (vm, owner) = Start(Guest(Conf(image, "memory:" + sink)));
        Watch(vm);
        // The guest is in its exit loop once its OUTs reach the UART; only then ask for the stop.
        AwaitCondition(() => SinkBytes(sink).Length > 0, TimeSpan.FromSeconds(10));
        vm.Tell(new StopVm("test"));
        var ended = owner.ExpectMsg<VmEnded>(TimeSpan.FromSeconds(10));
        Assert.Equal(VmEndReason.StoppedOnRequest, ended.Reason);
        Assert.True(Assert.Single(ended.Vcpus).Exits > 0);
        ExpectTerminated(vm);
    }
}

using Akka.Actor;
using Akka.Configuration;
using Akka.TestKit;
using Akka.TestKit.Xunit2;
using KvmActors.Runtime.Config;
using KvmActors.Runtime.Devices;
using KvmActors.Sdk;
using KvmActors.Runtime.Vm;
using Xunit.Abstractions;

namespace KvmActors.Tests.Support;

/// <summary>
/// TestKit with the runtime's reference.conf, and helpers to run a guest given as HOCON text
/// through the real VM actor on /dev/kvm.
/// </summary>
public abstract class KvmTestKit : TestKit
{
    private static readonly Config TestConfig = ConfigurationFactory.ParseString("""
        akka.loglevel = INFO
        akka.stdout-loglevel = WARNING
        akka.log-dead-letters = off
        akka.log-dead-letters-during-shutdown = off
        """);

    protected KvmTestKit(ITestOutputHelper output, Config? extra = null)
        : base(KvmActorsConfig.WithDefaults(extra is null ? TestConfig : extra.WithFallback(TestConfig)), output: output)
    {
    }

    protected VmSettings Settings => RuntimeSettingsBinder.Bind(Sys.Settings.Config, "test.conf");

    /// <summary>A guest spec from HOCON text (as if read from a file named test.conf).</summary>
    protected static GuestSpec Guest(string hocon, params string[] sets) =>
        GuestConfigLoader.FromText(hocon, "test.conf", AppContext.BaseDirectory, sets);

    /// <summary>
    /// A real-mode guest of 64 KiB RAM running <paramref name="image"/> from 0x1000, with COM1 writing to the
    /// memory sink <paramref name="sink"/>, plus the guest-block lines in <paramref name="extra"/>.
    /// </summary>
    protected static string RealModeGuest(byte[] image, string sink, string extra = "") => $$"""
        guest {
          name = test
          memory = [
            { address = 0, size = 64K }
          ]
          image {
            inline = "{{Guests.Hex(image)}}"
            load-address = 0x1000
          }
          cpu.registers.rip = 0x1000
          devices.com1.options.sink = "memory:{{sink}}"
          {{extra}}
        }
        """;

    /// <summary>Starts the VM with a probe as its owner; the caller expects <see cref="VmEnded"/> on the probe.</summary>
    protected (IActorRef Vm, TestProbe Owner) Start(GuestSpec spec)
    {
        var owner = CreateTestProbe();
        var vm = Sys.ActorOf(VmActor.Props(spec, owner.Ref, Settings));
        return (vm, owner);
    }

    /// <summary>Runs a guest to its end and returns how it ended.</summary>
    protected VmEnded Run(GuestSpec spec, TimeSpan? within = null)
    {
        var (vm, owner) = Start(spec);
        Watch(vm);
        var ended = owner.ExpectMsg<VmEnded>(within ?? TimeSpan.FromSeconds(20));
        ExpectTerminated(vm);
        return ended;
    }

    /// <summary>The text a "memory:NAME" sink collected.</summary>
    protected string SinkText(string sinkName) => HostIo.For(Sys).Memory(sinkName).Text;

    /// <summary>A unique memory sink name, so tests sharing an actor system never mix outputs.</summary>
    protected static string SinkName() => "out-" + Guid.NewGuid().ToString("N")[..8];
}

using System.Reflection;
using Akka.Actor;
using Akka.Configuration;
using KvmActors.Runtime.Bus;
using KvmActors.Sdk;
using KvmActors.Runtime.Config;
using KvmActors.Runtime.Devices;
using KvmActors.Runtime.Vm;
using KvmActors.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace KvmActors.Tests.DevicesOnKvm;

/// <summary>
/// The sample plug-in (tests/SamplePlugin, built to plugins/ beside the tests and never referenced by
/// them): loaded through <c>kvmactors.devices.plugin-directories</c>, used by short name and by .NET
/// type name, and driven by real guests.
/// </summary>
public sealed class SamplePluginTests(ITestOutputHelper output) : KvmTestKit(output, PluginConfig)
{
    public static string PluginDir => Path.Combine(AppContext.BaseDirectory, "plugins");
    public const string PluginAssembly = "KvmActors.SamplePlugin";
    public const string DeviceClass = "KvmActors.SamplePlugin.SampleCounterDevice";

    public static Config PluginConfig => ConfigurationFactory.ParseString(
        $"kvmactors.devices.plugin-directories = [\"{PluginDir}\"]");

    /// <summary>A real-mode guest at 0x1000 with COM1 on a memory sink, a stack, and <paramref name="extra"/>.</summary>
    public static string Conf(byte[] image, string sink, string extra = "") => $$"""
        guest {
          name = devices-test
          memory = [
            { name = ram, address = 0x0, size = 64K }
          ]
          image {
            inline = "{{Guests.Hex(image)}}"
            load-address = 0x1000
          }
          cpu.registers {
            rip = 0x1000
            rsp = 0x8000
          }
          devices.com1.options.sink = "memory:{{sink}}"
          {{extra}}
        }
        """;

    private static string Counter(string type, string options = "initial = 0x1000\nstep = 0x10") => $$"""
        devices.counter {
          type = "{{type}}"
          ports = ["0x520-0x527"]
          options {
            {{options}}
          }
        }
        """;

    /// <summary>What <see cref="DeviceGuests.CounterOnPorts"/> prints for initial 0x1000, step 0x10.</summary>
    private const string CounterOutput =
        "00001105\n" + // 0x1000 + 5 + 0x100
        "00001115\n" + // + step, after the first read
        "00000002\n" + // two writes to COUNT
        "00000025\n" + // a 1-byte read: the low byte of 0x1125
        "00001000\n";  // after the reset: initial

    [Fact]
    public void The_plugin_is_built_beside_the_tests_but_not_referenced_by_them()
    {
        Assert.True(File.Exists(Path.Combine(PluginDir, PluginAssembly + ".dll")), $"{PluginAssembly}.dll not in {PluginDir}");
        Assert.False(File.Exists(Path.Combine(AppContext.BaseDirectory, PluginAssembly + ".dll")));
        Assert.DoesNotContain(typeof(SamplePluginTests).Assembly.GetReferencedAssemblies(), a => a.Name == PluginAssembly);
        // The runtime is the host's: the plug-in folder holds no copy of it.
        Assert.False(File.Exists(Path.Combine(PluginDir, "KvmActors.Runtime.dll")));
    }

    [Fact]
    public void The_registry_finds_the_device_by_short_name_in_the_plugin_directory()
    {
        var registry = new DeviceRegistry(BuiltInDevices.Assemblies, [PluginDir]);
        var type = registry.Resolve("sample-counter");
        Assert.NotNull(type);
        Assert.Equal(DeviceClass, type.FullName);
        Assert.Equal(Path.Combine(PluginDir, PluginAssembly + ".dll"), type.Assembly.Location);
        Assert.Contains("sample-counter", registry.Types.Keys);
        // And by type name, with or without the assembly.
        Assert.Same(type, registry.Resolve($"{DeviceClass}, {PluginAssembly}"));
        Assert.Same(type, registry.Resolve(DeviceClass));
    }

    [Fact]
    public void The_settings_take_initial_and_step_and_reject_the_rest()
    {
        var settings = ParseSettings("initial = 0x10\nstep = 3");
        Assert.Equal("SampleCounterSettings { Initial = 16, Step = 3 }", settings.ToString());
        Assert.Equal("SampleCounterSettings { Initial = 0, Step = 0 }", ParseSettings("").ToString());

        var unknown = Assert.Throws<ConfigException>(() => ParseSettings("start = 1"));
        Assert.Equal("guest.devices.counter.options.start", unknown.Key);
        Assert.Contains("known: initial, step", unknown.Message);

        var big = Assert.Throws<ConfigException>(() => ParseSettings("initial = 0x100000000"));
        Assert.Equal("guest.devices.counter.options.initial", big.Key);
        var step = Assert.Throws<ConfigException>(() => ParseSettings("step = 0x10000"));
        Assert.Equal("guest.devices.counter.options.step", step.Key);
        var text = Assert.Throws<ConfigException>(() => ParseSettings("step = many"));
        Assert.Contains("'many' is not a number", text.Message);
        // A HOCON null is no value: the default applies.
        Assert.Equal("SampleCounterSettings { Initial = 0, Step = 0 }", ParseSettings("initial = null").ToString());
    }

    [Fact]
    public void The_device_actor_counts_through_the_device_contract()
    {
        var type = new DeviceRegistry(BuiltInDevices.Assemblies, [PluginDir]).Resolve("sample-counter")!;
        var vm = CreateTestProbe();
        var ctx = new DeviceContext
        {
            Name = "counter", Type = "sample-counter",
            Options = new DeviceOptions(ConfigurationFactory.ParseString("initial = 7"), "guest.devices.counter.options", "test.conf", "."),
            Ports = [new PortRange(0x520, 0x527)], Vm = vm.Ref, Machine = new MachineInfo(1, 1 << 20, []),
        };
        var device = Sys.ActorOf(DeviceRegistry.PropsFor(type, ctx));

        device.Tell(new PortRead(0x520, 0, 4, 0, 1));
        Assert.Equal(7UL, ExpectMsg<ReadCompleted>().Value);
        device.Tell(new PortWrite(0x520, 0, 1, 0x1ff, 0)); // a byte write adds its byte only
        device.Tell(new MmioRead(0xd000_0000, 0, 8, 0, 2));
        Assert.Equal(new ReadCompleted(2, 7 + 0xff), ExpectMsg<ReadCompleted>());
        device.Tell(new PortRead(0x524, 4, 2, 0, 3));
        Assert.Equal(1UL, ExpectMsg<ReadCompleted>().Value);
        device.Tell(new PortRead(0x522, 2, 1, 0, 4)); // not a register
        Assert.Equal(0xffUL, ExpectMsg<ReadCompleted>().Value);
        device.Tell(new PortWrite(0x524, 4, 1, 0, 0)); // reset
        device.Tell(new PortRead(0x520, 0, 4, 0, 5));
        Assert.Equal(7UL, ExpectMsg<ReadCompleted>().Value);
    }

    [KvmFact]
    public void A_guest_reads_and_writes_the_plugin_device_loaded_by_short_name()
    {
        var sink = SinkName();
        var ended = Run(Guest(Conf(DeviceGuests.CounterOnPorts(0x520), sink, Counter("sample-counter"))));

        Assert.Equal(VmEndReason.Halted, ended.Reason);
        Assert.Equal(CounterOutput, SinkText(sink));
    }

    [KvmFact]
    public void A_guest_reads_and_writes_the_plugin_device_loaded_by_assembly_qualified_type_name()
    {
        var sink = SinkName();
        var ended = Run(Guest(Conf(DeviceGuests.CounterOnPorts(0x520), sink, Counter($"{DeviceClass}, {PluginAssembly}"))));

        Assert.Equal(VmEndReason.Halted, ended.Reason);
        Assert.Equal(CounterOutput, SinkText(sink));
    }

    [KvmFact]
    public void An_unknown_device_type_ends_the_vm_as_a_config_fault_naming_the_key_and_the_registered_types()
    {
        var ended = Run(Guest(Conf(Guests.Seed, SinkName(), "devices.bogus { type = no-such-device, ports = [\"0x500\"] }")));

        Assert.Equal(VmEndReason.Fault, ended.Reason);
        Assert.Equal(2, ended.ExitStatus);
        Assert.Contains("test.conf: guest.devices.bogus.type", ended.Detail);
        Assert.Contains("no device type 'no-such-device'", ended.Detail);
        Assert.Contains("uart-16550", ended.Detail);
        Assert.Contains("debug-exit", ended.Detail);
        Assert.Contains("sample-counter", ended.Detail); // the plug-in's name is registered too
        Assert.Empty(ended.Vcpus); // no vCPU ever ran
    }

    [KvmFact]
    public void A_bad_plugin_option_ends_the_vm_as_a_fault_naming_the_option()
    {
        // The guest spins, so only the device's failure can end the VM.
        var ended = Run(Guest(Conf(Guests.Spin, SinkName(), Counter("sample-counter", "step = 0x10000"))));

        Assert.Equal(VmEndReason.Fault, ended.Reason);
        Assert.Equal(2, ended.ExitStatus); // a config error, not restarted
        Assert.Contains("counter", ended.Detail);
        Assert.True(ended.Detail.Contains("guest.devices.counter.options.step"), ended.Detail);
        Assert.All(ended.ActorFailures, f => Assert.False(f.Restarted));
    }

    [KvmFact]
    public void The_cli_loads_the_plugin_from_a_folder_given_with_set()
    {
        var file = Path.Combine(Path.GetTempPath(), $"counter-{Guid.NewGuid():N}.conf");
        File.WriteAllText(file, Conf(DeviceGuests.CounterOnPorts(0x520), "unused", Counter("sample-counter"))
            .Replace("devices.com1.options.sink = \"memory:unused\"", ""));
        try
        {
            var r = Kvmactors.Run("run", file, "--set", $"kvmactors.devices.plugin-directories=[\"{PluginDir}\"]");
            Assert.Equal(0, r.ExitCode);
            Assert.Equal(CounterOutput, r.Stdout);
        }
        finally { File.Delete(file); }
    }

    [Fact]
    public void A_missing_plugin_folder_is_a_config_error_naming_the_key()
    {
        var e = Assert.Throws<ConfigException>(() => new DeviceRegistry(BuiltInDevices.Assemblies, ["/no/such/plugins"]));
        Assert.Equal("kvmactors.devices.plugin-directories", e.Key);
        Assert.Contains("/no/such/plugins", e.Message);
    }

    [KvmFact]
    public void An_unknown_device_type_through_the_cli_exits_2_naming_the_key()
    {
        var r = Kvmactors.Run("run", "hocon/guests/debug-exit.conf", "--set", "guest.devices.bogus.type=no-such-device");

        Assert.Equal(2, r.ExitCode);
        Assert.Equal("", r.Stdout);
        Assert.Contains("guest.devices.bogus.type", r.Stderr);
        Assert.Contains("no-such-device", r.Stderr);
        Assert.Contains("uart-16550", r.Stderr);
    }

    private static object ParseSettings(string options)
    {
        var type = new DeviceRegistry(BuiltInDevices.Assemblies, [PluginDir]).Resolve("sample-counter")!;
        var parse = type.Assembly.GetType("KvmActors.SamplePlugin.SampleCounterSettings")!.GetMethod("Parse")!;
        var opts = new DeviceOptions(ConfigurationFactory.ParseString(options), "guest.devices.counter.options", "test.conf", ".");
        try { return parse.Invoke(null, [opts])!; }
        catch (TargetInvocationException e) when (e.InnerException is not null) { throw e.InnerException; }
    }
}

using CsCheck;
using KvmActors.Runtime.Config;
using KvmActors.Tests.Support;
using Xunit;

namespace KvmActors.Tests.ConfigBinding;

/// <summary>
/// Valid guest files mutated at random (wrong types, nulls, empty lists, huge numbers, substitutions, deep
/// nesting, truncation): every one binds or is a ConfigException, never another exception or a hang.
/// </summary>
public sealed class ConfigPropertyTests
{
    private const string Base = """
        guest {
          name = prop
          vcpus = 2
          memory = [ { name = ram, address = 0, size = 1M }, { name = rom, address = 0x100000, size = 4K, read-only = yes, inline = "90 f4" } ]
          image { format = flat, inline = "f4", load-address = 0x1000 }
          cpu {
            mode = real
            registers { rax = 1 }
            segments { ds { selector = 0, base = 0, limit = 0xffff } }
          }
          vcpu-overrides { "1" { registers { rip = 0x1000 } } }
          cpuid.mask = [x2apic]
          devices {
            com1.options { sink = null, irq = 4 }
            exit { type = debug-exit, ports = ["0xf4"], irqs = [5] }
            mm { type = debugcon, mmio = ["0xd0000000-0xd0000fff"], enabled = on }
          }
          supervision.vcpu { directive = restart, max-restarts = 3, within = 10s }
          faults.vcpus."0" { throw-after-exits = 1000000, repeat = no }
          faults.devices.exit { reply-delay = 1ms }
          halt-policy = first-halt
          unmapped-io = ignore
        }
        kvmactors.vm.kick-signal = 41
        kvmactors.vcpu.exits-per-message = 16
        """;

    private static readonly string[] Keys =
    [
        "guest", "guest.name", "guest.vcpus", "guest.memory", "guest.memory.0", "guest.image", "guest.image.inline",
        "guest.image.file", "guest.image.format", "guest.image.load-address", "guest.image.modules", "guest.image.cmdline",
        "guest.cpu", "guest.cpu.mode", "guest.cpu.registers", "guest.cpu.registers.rip", "guest.cpu.segments.ds",
        "guest.cpu.segments.ds.limit", "guest.vcpu-overrides", "guest.vcpu-overrides.\"1\"", "guest.cpuid.mask",
        "guest.devices", "guest.devices.com1", "guest.devices.com1.ports", "guest.devices.com1.type",
        "guest.devices.com1.options", "guest.devices.exit.irqs", "guest.devices.mm.mmio", "guest.devices.mm.enabled",
        "guest.supervision", "guest.supervision.vcpu.within", "guest.supervision.vcpu.directive", "guest.faults",
        "guest.faults.vcpus", "guest.faults.devices.exit.reply-delay", "guest.halt-policy", "guest.unmapped-io", "guest.irqchip",
        "kvmactors", "kvmactors.vm", "kvmactors.vm.kick-signal", "kvmactors.vm.stop-timeout", "kvmactors.vcpu.exits-per-message",
        "kvmactors.devices.plugin-directories", "kvmactors.vcpu-dispatcher.type",
    ];

    private static readonly string[] Values =
    [
        "null", "\"null\"", "[]", "[ ]", "[null]", "{}", "{ a = 1 }", "1", "0", "-1", "abc", "yes", "off", "\"\"",
        "99999999999999999999999999", "18446744073709551615", "0xffffffffffffffff", "1e308", "Infinity", "NaN", "0x", "1G", "64K",
        "\"0x3f8-0x3f0\"", "[\"0x3f8-0x3ff\"]", "[[1]]", "[1, { x = 1 }]", "[{ address = 0, size = 4K }]",
        "[{ address = 0xfffffffffffff000, size = 8K }]", "[{ file = \"/dev/zero\" }]", "\"/dev/zero\"", "\"/proc/self/mem\"", "\"/\"",
        "${guest.vcpus}", "${guest}", "${?nothing}", "${nothing}", "${guest.memory}", "${kvmactors.vm}",
        "\"\\u0000\"", "2s", "0ms", "99999999999h", "real", "long", "multiboot", "elf", "\"f4 f4 f4\"", "\"zz\"",
    ];

    private static string Deep(int levels, char open, char close) => new string(open, levels) + new string(close, levels);

    /// <summary>The base file with a few keys set to hostile values (later HOCON lines win), sometimes truncated.</summary>
    private static readonly Gen<string> Mutated =
        Gen.Select(
            Gen.Select(Gen.Int[0, Keys.Length - 1], Gen.Int[0, Values.Length + 1], Gen.Int[1, 200])
                .Select((k, v, depth) => $"{Keys[k]} = {(v < Values.Length ? Values[v] : Deep(depth * (v - Values.Length + 1) * 10, v == Values.Length ? '[' : '{', v == Values.Length ? ']' : '}'))}")
                .Array[1, 4],
            Gen.Int[0, 9], Gen.Int[0, Base.Length])
        .Select((lines, truncate, at) => (truncate == 0 ? Base[..at] : Base) + "\n" + string.Join("\n", lines));

    private static Exception? BindOnce(string text)
    {
        var run = Task.Run(() =>
        {
            try { GuestConfigLoader.FromText(text, "prop.conf", AppContext.BaseDirectory); return null; }
            catch (ConfigException) { return null; }
            catch (Exception e) { return e; }
        });
        if (!run.Wait(TimeSpan.FromSeconds(10))) return new TimeoutException("binding did not end within 10 s");
        return run.Result;
    }

    [Fact]
    public void Config_mutated_guest_files_bind_or_are_config_errors()
    {
        Assert.Null(BindOnce(Base)); // the base is valid: mutations start from a file that binds
        GuestConfigLoader.FromText(Base, "prop.conf", AppContext.BaseDirectory);
        Mutated.Sample(text =>
        {
            var failure = BindOnce(text);
            if (failure is not null) throw new Xunit.Sdk.XunitException($"{failure.GetType().Name}: {failure.Message}\n--- config ---\n{text}");
        }, iter: 3000, threads: 2);
    }

    [KvmFact]
    public void Config_mutated_guest_files_through_the_cli_exit_0_1_or_2_without_a_stack_trace()
    {
        var dir = Directory.CreateTempSubdirectory("kvmactors-prop-");
        try
        {
            var pcg = new PCG(20261201); // a fixed sample: the in-process test explores; this one checks the process end to end
            var cases = Enumerable.Range(0, 24).Select(_ => Mutated.Generate(pcg, null!, out Size _)).ToArray();
            Parallel.For(0, cases.Length, new ParallelOptions { MaxDegreeOfParallelism = 2 }, i =>
            {
                var path = Path.Combine(dir.FullName, $"case{i}.conf");
                File.WriteAllText(path, cases[i]);
                var r = Kvmactors.Run(TimeSpan.FromSeconds(30), "run", path, "--timeout", "2s");
                // 124: a mutated guest that binds may spin until --timeout, which ends it on time.
                Assert.True(r.ExitCode is 0 or 1 or 2 or 124, $"exit {r.ExitCode}\n{r.Stderr}\n--- config ---\n{cases[i]}");
                Assert.DoesNotContain("   at ", r.Stderr);
                Assert.DoesNotContain("Unhandled exception", r.Stderr);
            });
        }
        finally { dir.Delete(recursive: true); }
    }
}

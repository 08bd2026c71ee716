using Akka.Actor;
using KvmActors.Runtime.Boot;
using KvmActors.Runtime.Config;
using KvmActors.Runtime.Vm;
using KvmActors.Sdk;
using KvmActors.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace KvmActors.Tests.Platform;

/// <summary>
/// The boot platform end to end on /dev/kvm, through the VM actor and through the CLI: guests in each CPU mode,
/// ELF and Multiboot images, fw_cfg, and SMP bring-up with INIT/SIPI through an in-kernel irqchip.
/// </summary>
public sealed class PlatformKvmTests(ITestOutputHelper output) : KvmTestKit(output)
{
    private static readonly TimeSpan RunBound = TimeSpan.FromSeconds(30);

    /// <summary>The devices a QEMU-convention guest expects: COM1 (to a memory sink), debug-exit at 0xf4, fw_cfg.</summary>
    internal static string Devices(string sink) => $$"""
          devices {
            com1 {
              options.sink = "{{sink}}"
            }
            exit {
              type = debug-exit
              ports = ["0xf4"]
            }
            fw-cfg {
              type = fw-cfg
              ports = ["0x510-0x511"]
            }
          }
        """;

    internal static string ModeConf(CpuMode mode, string sink) => mode switch
    {
        CpuMode.Real => $$"""
            guest {
              name = real-hello
              image.inline = "{{Guests.Hex(PlatformGuests.RealHello())}}"
              {{Devices(sink)}}
            }
            """,
        _ => $$"""
            guest {
              name = {{PlatformNames.ModeName(mode)}}-hello
              memory = [
                { name = ram, address = 0, size = 2M }
              ]
              image {
                inline = "{{Guests.Hex(mode == CpuMode.Protected ? PlatformGuests.ProtectedHello() : PlatformGuests.LongHello())}}"
                load-address = 0x100000
              }
              cpu.mode = {{PlatformNames.ModeName(mode)}}
              {{Devices(sink)}}
            }
            """,
    };

    private static (string Text, byte Exit) Expected(CpuMode mode) => mode switch
    {
        CpuMode.Real => (PlatformGuests.RealText, PlatformGuests.RealExit),
        CpuMode.Protected => (PlatformGuests.ProtectedText, PlatformGuests.ProtectedExit),
        _ => (PlatformGuests.LongText, PlatformGuests.LongExit),
    };

    [KvmTheory]
    [InlineData(CpuMode.Real)]
    [InlineData(CpuMode.Protected)]
    [InlineData(CpuMode.Long)]
    public void A_guest_in_each_mode_prints_and_ends_through_debug_exit(CpuMode mode)
    {
        var sink = SinkName();
        var ended = Run(Guest(ModeConf(mode, "memory:" + sink)), RunBound);

        var (text, exit) = Expected(mode);
        Assert.True(ended.Reason == VmEndReason.GuestExit, ended.ToString());
        Assert.Equal(PlatformGuests.ExitStatus(exit), ended.ExitStatus);
        Assert.Equal(text, SinkText(sink));
    }

    [KvmTheory]
    [InlineData(CpuMode.Real)]
    [InlineData(CpuMode.Protected)]
    [InlineData(CpuMode.Long)]
    public void A_guest_in_each_mode_run_by_the_cli_exits_with_its_debug_exit_status(CpuMode mode)
    {
        using var dir = new TempDir();
        var conf = dir.Write("guest.conf", ModeConf(mode, "stdout"));
        var result = Kvmactors.Run("run", conf, "--timeout", "30s");

        var (text, exit) = Expected(mode);
        Assert.True(PlatformGuests.ExitStatus(exit) == result.ExitCode, $"exit {result.ExitCode}; stderr: {result.Stderr}");
        Assert.Equal(text, result.Stdout);
    }

    [KvmFact]
    public void An_elf64_image_is_loaded_by_its_program_headers_and_entered_in_long_mode_at_e_entry()
    {
        var sink = SinkName();
        var ended = Run(Guest($$"""
            guest {
              memory = [
                { name = ram, address = 0, size = 2M }
              ]
              image {
                format = elf
                inline = "{{Guests.Hex(PlatformGuests.Elf64Hello())}}"
              }
              {{Devices("memory:" + sink)}}
            }
            """), RunBound);

        Assert.True(ended.Reason == VmEndReason.GuestExit, ended.ToString());
        Assert.Equal(PlatformGuests.ExitStatus(PlatformGuests.Elf64Exit), ended.ExitStatus);
        Assert.Equal(PlatformGuests.Elf64Text, SinkText(sink));
    }

    [KvmFact]
    public void A_multiboot_kernel_in_an_elf64_file_reads_its_command_line_and_modules_from_the_info_structure()
    {
        var sink = SinkName();
        using var dir = new TempDir();
        dir.Write("initrd.txt", "module one\n");
        var spec = GuestConfigFromDir(dir, $$"""
            guest {
              memory = [
                { name = low, address = 0, size = 640K }
                { name = high, address = 1M, size = 1M }
              ]
              image {
                format = multiboot
                file = "kernel64.elf"
                cmdline = "console=ttyS0 answer=42"
                modules = [
                  { file = "initrd.txt", cmdline = "root=/dev/ram0" }
                  { inline = "6d 6f 64 75 6c 65 20 74 77 6f" }
                ]
              }
              {{Devices("memory:" + sink)}}
            }
            """, ("kernel64.elf", PlatformGuests.MultibootElf64Kernel()));
        Assert.Equal(CpuMode.Protected, spec.Machine.Platform.Mode);
        var ended = Run(spec, RunBound);

        Assert.True(ended.Reason == VmEndReason.GuestExit, ended + Environment.NewLine + SinkText(sink));
        Assert.Equal(PlatformGuests.ExitStatus(PlatformGuests.MultibootExit), ended.ExitStatus);
        Assert.Equal("kernel64.elf console=ttyS0 answer=42\n" +
                     "initrd.txt root=/dev/ram0: module one\n\n" +
                     "module: module two\n", SinkText(sink));
    }

    [KvmFact]
    public void The_multiboot_example_runs_through_the_actor_and_the_cli()
    {
        var path = Path.Combine(RepoRoot.Path, "hocon", "guests", "multiboot.conf");
        var sink = SinkName();
        var ended = Run(GuestConfigLoader.LoadFile(path, [$"guest.devices.com1.options.sink = \"memory:{sink}\""]), RunBound);
        Assert.True(ended.Reason == VmEndReason.GuestExit, ended.ToString());
        Assert.Equal(PlatformGuests.ExitStatus(PlatformGuests.MultibootExit), ended.ExitStatus);
        Assert.Equal(PlatformExampleTests.MultibootExpected, SinkText(sink));

        var cli = Kvmactors.Run("run", path, "--timeout", "30s");
        Assert.True(PlatformGuests.ExitStatus(PlatformGuests.MultibootExit) == cli.ExitCode, $"exit {cli.ExitCode}; stderr: {cli.Stderr}");
        Assert.Equal(PlatformExampleTests.MultibootExpected, cli.Stdout);
    }

    [KvmTheory]
    [InlineData("ignore")]
    [InlineData("strict")] // a write to ROM is dropped, not an unmapped access, even in strict mode
    public void A_guest_reads_ram_size_and_cpu_count_from_fw_cfg_and_they_match_the_config(string unmappedIo)
    {
        var sink = SinkName();
        // 1 MiB + a hole + 1 MiB of RAM (2 MiB), a 64 KiB ROM below 4 GiB with one byte of content, 3 vCPUs.
        var ended = Run(Guest($$"""
            guest {
              vcpus = 3
              irqchip = true
              memory = [
                { name = low, address = 0, size = 1M }
                { name = high, address = 2M, size = 1M }
                { name = rom, address = 0xffff0000, size = 64K, read-only = true, inline = "5a" }
              ]
              image {
                inline = "{{Guests.Hex(PlatformGuests.FwCfgProbe())}}"
                load-address = 0x8000
              }
              cpu.mode = protected
              unmapped-io = {{unmappedIo}}
              {{Devices("memory:" + sink)}}
            }
            """), RunBound);

        Assert.True(ended.Reason == VmEndReason.GuestExit, ended + Environment.NewLine + SinkText(sink));
        Assert.Equal(PlatformGuests.ExitStatus(PlatformGuests.FwCfgExit), ended.ExitStatus);
        Assert.Equal("sig=QEMU ram=0000000000200000 cpus=0003 rom=5a\n", SinkText(sink));
    }

    [KvmFact]
    public void Smp_with_an_irqchip_the_boot_vcpu_wakes_the_others_with_init_sipi_and_each_reports_its_apic_id()
    {
        const int vcpus = 4;
        var path = Path.Combine(RepoRoot.Path, "hocon", "guests", "smp-irqchip.conf");
        var sink = SinkName();
        var ended = Run(GuestConfigLoader.LoadFile(path,
            [$"guest.devices.com1.options.sink = \"memory:{sink}\"", $"guest.vcpus = {vcpus}"]), RunBound);

        var text = SinkText(sink);
        Assert.True(ended.Reason == VmEndReason.GuestExit, ended + Environment.NewLine + text);
        Assert.Equal(PlatformGuests.ExitStatus(PlatformGuests.SmpExit), ended.ExitStatus);
        var lines = text.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal($"BSP: {vcpus} CPUs", lines[0]);
        Assert.Equal(Enumerable.Range(1, vcpus - 1).Select(i => $"AP {i} up"), lines[1..^1].Order());
        Assert.Equal($"all {vcpus - 1} APs reported", lines[^1]);

        // Every vCPU ran on its own thread; with the irqchip in the kernel no HLT reached the host.
        Assert.Equal(vcpus, ended.Vcpus.Count);
        Assert.Equal(vcpus, ended.Vcpus.Select(v => v.NativeThreadId).Distinct().Count());
        Assert.All(ended.Vcpus, v => Assert.False(v.Halted, $"vcpu {v.VcpuId} reported a HLT exit"));
        Assert.All(ended.Vcpus, v => Assert.False(v.ExitsByReason.ContainsKey("Hlt")));
    }

    [KvmFact]
    public void Smp_irqchip_example_runs_through_the_cli()
    {
        var result = Kvmactors.Run("run", Path.Combine(RepoRoot.Path, "hocon", "guests", "smp-irqchip.conf"), "--timeout", "30s");
        Assert.True(PlatformGuests.ExitStatus(PlatformGuests.SmpExit) == result.ExitCode, $"exit {result.ExitCode}; stderr: {result.Stderr}");
        Assert.Equal("BSP: 2 CPUs\nAP 1 up\nall 1 APs reported\n", result.Stdout);
    }

    [KvmFact]
    public void With_an_irqchip_hlt_stays_in_the_kernel_and_a_stop_request_ends_the_vm()
    {
        // cli; hlt: with the irqchip in the kernel nothing wakes the vCPU and no HLT exit reaches the host;
        // the second vCPU never gets a SIPI. Both threads are blocked in KVM_RUN until the stop kicks them.
        var spec = Guest("""
            guest {
              vcpus = 2
              irqchip = true
              image.inline = "fa f4 eb fc"
            }
            """);
        var (vm, owner) = Start(spec);
        Watch(vm);
        owner.ExpectNoMsg(TimeSpan.FromMilliseconds(500));
        vm.Tell(new StopVm("test"));
        var ended = owner.ExpectMsg<VmEnded>(TimeSpan.FromSeconds(5));
        ExpectTerminated(vm);

        Assert.Equal(VmEndReason.StoppedOnRequest, ended.Reason);
        Assert.All(ended.Vcpus, v => Assert.False(v.Halted));
        // The BSP executed the HLT: its final RIP is past it (0x1002) or on the jmp back (0x1002..0x1003).
        var bsp = ended.Vcpus.Single(v => v.VcpuId == 0);
        Assert.InRange(bsp.FinalRegisters!.Value.Rip, 0x1001UL, 0x1003UL);
    }

    [KvmFact]
    public void With_an_irqchip_a_triple_fault_ends_the_vm_as_a_shutdown()
    {
        // Protected mode with no IDT (limit 0): ud2 raises #UD, which cannot be delivered, nor can the #GP and
        // #DF that follow: a triple fault.
        var ended = Run(Guest("""
            guest {
              irqchip = true
              vcpus = 2
              image {
                inline = "0f 0b"
                load-address = 0x8000
              }
              cpu.mode = protected
            }
            """), RunBound);

        Assert.Equal(VmEndReason.GuestFailure, ended.Reason);
        Assert.Contains("SHUTDOWN", ended.Failure!.ExitReason);
        Assert.Equal(0, ended.Failure.VcpuId);
    }

    [KvmFact]
    public void With_an_irqchip_a_reset_through_the_keyboard_controller_ends_the_vm()
    {
        // mov al, 0xfe ; out 0x64, al ; jmp $
        var ended = Run(Guest("""
            guest {
              irqchip = true
              image.inline = "b0 fe e6 64 eb fe"
              devices.kbd {
                type = i8042
                ports = ["0x60", "0x64"]
              }
            }
            """), RunBound);

        Assert.Equal(VmEndReason.ResetRequested, ended.Reason);
    }

    [KvmFact]
    public void A_device_interrupt_reaches_the_guest_through_the_in_kernel_pic()
    {
        var sink = SinkName();
        var ended = Run(Guest($$"""
            guest {
              irqchip = true
              image.inline = "{{Guests.Hex(PlatformGuests.UartInterrupt())}}"
              {{Devices("memory:" + sink)}}
            }
            """), RunBound);

        Assert.True(ended.Reason == VmEndReason.GuestExit, ended + Environment.NewLine + SinkText(sink));
        Assert.Equal(PlatformGuests.ExitStatus(PlatformGuests.IrqExit), ended.ExitStatus);
        Assert.Equal(PlatformGuests.IrqText, SinkText(sink));
    }

    [KvmFact]
    public void Without_an_irqchip_the_same_interrupt_goes_nowhere_and_the_vm_ends_halted()
    {
        var sink = SinkName();
        var ended = Run(Guest($$"""
            guest {
              image.inline = "{{Guests.Hex(PlatformGuests.UartInterrupt())}}"
              {{Devices("memory:" + sink)}}
            }
            """), RunBound);

        Assert.Equal(VmEndReason.Halted, ended.Reason);
        Assert.Equal("", SinkText(sink));
    }

    private static GuestSpec GuestConfigFromDir(TempDir dir, string hocon, params (string Name, byte[] Bytes)[] files)
    {
        foreach (var (name, bytes) in files) dir.Write(name, bytes);
        var path = dir.Write("guest.conf", hocon);
        return GuestConfigLoader.LoadFile(path);
    }
}

/// <summary>A temporary folder for config files and images, removed at dispose.</summary>
internal sealed class TempDir : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("kvmactors-platform-").FullName;

    public string Write(string name, string text)
    {
        var p = System.IO.Path.Combine(Path, name);
        File.WriteAllText(p, text);
        return p;
    }

    public string Write(string name, byte[] bytes)
    {
        var p = System.IO.Path.Combine(Path, name);
        File.WriteAllBytes(p, bytes);
        return p;
    }

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { }
    }
}

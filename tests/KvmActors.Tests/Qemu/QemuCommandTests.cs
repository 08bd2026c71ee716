using System.Diagnostics;
using KvmActors.Host.Qemu;
using KvmActors.Runtime.Config;
using KvmActors.Runtime.Debug;
using KvmActors.Tests.Gdb;
using KvmActors.Tests.Platform;
using KvmActors.Tests.Support;
using Xunit;

namespace KvmActors.Tests.Qemu;

/// <summary>kvmactors qemu: QEMU's command line mapped onto a guest file, and run through the real program.</summary>
public sealed class QemuCommandTests
{
    private static readonly string[] KvmUnitTestsLine =
    [
        "--no-reboot", "-nodefaults", "-global", "kvm-pit.lost_tick_policy=discard", "-device", "pc-testdev",
        "-device", "isa-debug-exit,iobase=0xf4,iosize=0x4", "-display", "none", "-serial", "stdio",
        "-device", "pci-testdev", "-machine", "accel=kvm", "-kernel", "x86/msr.flat", "-smp", "2",
        "-append", "-t 1", "-initrd", "/tmp/env",
    ];

    [Fact]
    public void The_command_line_kvm_unit_tests_runs_maps_onto_a_guest_the_config_loader_accepts()
    {
        var q = QemuCommandLine.Parse(KvmUnitTestsLine);
        Assert.Equal("x86/msr.flat", q.Kernel);
        Assert.Equal("-t 1", q.Append);
        Assert.Equal("/tmp/env", q.Initrd);
        Assert.Equal(2, q.Smp);
        Assert.Equal(128UL << 20, q.MemoryBytes);
        Assert.Equal(((ushort)0xf4, 4), q.DebugExit);
        Assert.True(q.PcTestdev);
        Assert.True(q.PciTestdev);

        var dir = Directory.CreateTempSubdirectory("qemu-map-");
        File.WriteAllBytes(Path.Combine(dir.FullName, "k.flat"), PlatformGuests.MultibootFlatKernel());
        var hocon = QemuCommandLine.ToHocon(q with { Kernel = "k.flat", Initrd = null }, dir.FullName);
        Assert.Contains($"file = \"{dir.FullName}/k.flat\"", hocon);   // relative paths are taken from the current directory
        var spec = GuestConfigLoader.FromText(hocon, "qemu.conf", "/");
        dir.Delete(true);
        Assert.Equal(2, spec.Machine.VcpuCount);
        Assert.True(spec.Machine.Platform.Irqchip);
        Assert.True(spec.Machine.Platform.Acpi);
        Assert.Equal("-t 1", spec.Machine.Platform.Cmdline);
        Assert.Equal(["com1", "fw-cfg", "rtc", "acpi-pm", "pci", "debug-exit", "pc-testdev", "pci-testdev"], spec.Devices.Select(d => d.Name));
        var exit = spec.Devices.Single(d => d.Name == "debug-exit");
        Assert.Equal(new PortRange(0xf4, 0xf7), Assert.Single(exit.Ports));
        Assert.Equal(new MmioRange(0xff000000, 0xff00ffff), Assert.Single(spec.Devices.Single(d => d.Name == "pc-testdev").Mmio));
    }

    [Fact]
    public void Cpu_model_and_features_map_to_guest_cpuid()
    {
        var q = QemuCommandLine.Parse(["-kernel", "k", "-cpu", "qemu64,+x2apic,-tsc-deadline,pcid=off,vendor=GenuineIntel,family=6"]);
        var hocon = QemuCommandLine.ToHocon(q, "/");
        Assert.Contains("cpuid.model = \"qemu64\"", hocon);
        Assert.Contains("cpuid.features = [\"+x2apic\", \"-tsc-deadline\", \"-pcid\"]", hocon);
        Assert.Contains("cpuid.vendor = \"GenuineIntel\"", hocon);
        Assert.Contains("cpuid.family = 6", hocon);
    }

    [Theory]
    [InlineData("accel=kvm")]
    [InlineData("pc,accel=kvm:tcg")]
    [InlineData("q35")]
    [InlineData("pit=off")] // kvm-unit-tests' vmexit_ipi
    public void Machine_options_harnesses_pass_are_accepted(string machine) =>
        Assert.Equal("k", QemuCommandLine.Parse(["-kernel", "k", "-machine", machine]).Kernel);

    [Fact]
    public void A_missing_kernel_gives_the_message_harnesses_probe_for()
    {
        var r = Kvmactors.Run("qemu", "-kernel", "_NO_FILE_4Uhere_", "-smp", "2");
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("could not load kernel '_NO_FILE_4Uhere_'", r.Stderr); // kvm-unit-tests' premature-failure probe
    }

    [Theory]
    [InlineData("256", 256UL << 20)]
    [InlineData("64M", 64UL << 20)]
    [InlineData("1G", 1UL << 30)]
    [InlineData("size=512M", 512UL << 20)]
    public void Memory_sizes_read_as_qemu_reads_them(string text, ulong bytes) =>
        Assert.Equal(bytes, QemuCommandLine.ParseMemory(text));

    [Theory]
    [InlineData("-hda", "-hda: invalid option")]
    [InlineData("-machine", "-machine accel=tcg: only the kvm accelerator is supported", "accel=tcg")]
    [InlineData("-device", "-device e1000: 'e1000' is not a device KvmActors provides (see -device help)", "e1000")]
    [InlineData("-smp", "-smp zero: expected a CPU count from 1 to 255", "zero")]
    [InlineData("-serial", "-serial pty: supported are stdio, none and file:PATH", "pty")]
    [InlineData("-cpu", "-cpu max,host-phys-bits: 'host-phys-bits' is not supported", "max,host-phys-bits")]
    [InlineData("-cpu", "-cpu Skylake-Server: 'Skylake-Server' is not a CPU model KvmActors provides (host, max, qemu64", "Skylake-Server")]
    [InlineData("-cpu", "-cpu host,+no-such-bit: '+no-such-bit' is not supported", "host,+no-such-bit")]
    public void Unknown_or_unsupported_options_are_errors_naming_the_option(string option, string message, string? value = null)
    {
        string[] args = value is null ? ["-kernel", "k", option] : ["-kernel", "k", option, value];
        var e = Assert.Throws<QemuUsageException>(() => QemuCommandLine.Parse(args));
        Assert.StartsWith(message, e.Message);
    }

    [Fact]
    public void The_wrapper_answers_the_probes_kvm_unit_tests_makes_and_rejects_a_bad_option_with_status_1()
    {
        var help = Kvmactors.Run("qemu", "--help");
        Assert.Equal(0, help.ExitCode);
        Assert.StartsWith("QEMU emulator version ", help.Stdout); // run_tests.sh: `$QEMU --help | grep -q QEMU`, `-h | head -1`
        var devices = Kvmactors.Run("qemu", "-device", "?");
        Assert.Contains("\"pc-testdev\"", devices.Stdout);
        Assert.Contains("\"pci-testdev\"", devices.Stdout);
        var bad = Kvmactors.Run("qemu", "-kernel", "k", "-snapshot");
        Assert.Equal(1, bad.ExitCode);
        Assert.Equal("kvmactors-qemu: -snapshot: invalid option\n", bad.Stderr);
        Assert.Equal("", bad.Stdout);
        Assert.True(File.Exists(Path.Combine(AppContext.BaseDirectory, "kvmactors-qemu")), "the wrapper is installed beside the program");
    }

    [KvmFact]
    public void A_multiboot_kernel_runs_through_kvmactors_qemu_with_its_command_line_and_initrd_and_gives_the_debug_exit_status()
    {
        var dir = Directory.CreateTempSubdirectory("qemu-test-");
        try
        {
            var kernel = Path.Combine(dir.FullName, "kernel.flat");
            var env = Path.Combine(dir.FullName, "env");
            File.WriteAllBytes(kernel, PlatformGuests.MultibootFlatKernel());
            File.WriteAllText(env, "NR_CPUS=2");
            var r = Kvmactors.Run("qemu", "-kernel", kernel, "-append", "one two", "-initrd", env, "-smp", "2",
                "-device", "isa-debug-exit,iobase=0xf4,iosize=4", "-nodefaults", "-display", "none", "-serial", "stdio",
                "-machine", "accel=kvm", "--no-reboot");
            Assert.True(PlatformGuests.ExitStatus(PlatformGuests.MultibootExit) == r.ExitCode, $"exit {r.ExitCode}; stderr: {r.Stderr}");
            var lines = r.Stdout.Split('\n');
            Assert.Equal($"{kernel} one two", lines[0]);
            Assert.EndsWith(": NR_CPUS=2", lines[1]);
            Assert.StartsWith(env, lines[1]);
            Assert.Equal("", r.Stderr); // harnesses take stderr output as a VMM failure
        }
        finally { dir.Delete(true); }
    }

    [Fact]
    public void Gdb_options_map_onto_the_gdb_stub_and_minus_S_without_a_stub_is_an_error()
    {
        var kernel = Path.GetTempFileName();
        File.WriteAllBytes(kernel, PlatformGuests.MultibootFlatKernel());
        GuestSpec Spec(params string[] args) =>
            GuestConfigLoader.FromText(QemuCommandLine.ToHocon(QemuCommandLine.Parse(["-kernel", kernel, .. args]), "/"), "qemu.conf", "/");

        Assert.Null(Spec().Gdb);
        Assert.Equal(new GdbSpec("tcp::1234", Wait: false, AllowRemote: false), Spec("-s").Gdb);
        Assert.Equal(new GdbSpec("tcp::1234", Wait: true, AllowRemote: false), Spec("-s", "-S").Gdb);
        Assert.Equal(new GdbSpec("unix:/tmp/g.sock", Wait: true, AllowRemote: false), Spec("-S", "-gdb", "unix:/tmp/g.sock,server=on,wait=off").Gdb);
        Assert.Equal(new GdbSpec("tcp:localhost:4321", Wait: false, AllowRemote: false), Spec("-gdb", "tcp:localhost:4321").Gdb);
        Assert.Equal(new GdbSpec("tcp:0.0.0.0:4321", Wait: false, AllowRemote: true), Spec("--gdb", "tcp:0.0.0.0:4321").Gdb); // QEMU listens where it is told
        Assert.Null(Spec("-s", "-gdb", "none").Gdb);
        Assert.StartsWith("-S: without -s or -gdb nothing could start the CPU",
            Assert.Throws<QemuUsageException>(() => QemuCommandLine.Parse(["-kernel", "k", "-S"])).Message);
        Assert.StartsWith("-gdb pty: supported are tcp:[HOST]:PORT, unix:PATH and none",
            Assert.Throws<QemuUsageException>(() => QemuCommandLine.Parse(["-kernel", "k", "-gdb", "pty"])).Message);
        File.Delete(kernel);
    }

    [KvmFact]
    public void An_s3_suspend_stops_the_vcpu_at_the_write_and_the_rtc_alarm_resumes_it_in_real_mode_at_the_waking_vector()
    {
        WithKernel(S3Guests.SleepAndWakeByRtcAlarm(), (kernel, _) =>
        {
            var r = Kvmactors.Run("qemu", "-kernel", kernel, "-device", "isa-debug-exit,iobase=0xf4,iosize=4", "-nodefaults", "-serial", "stdio");
            // 0x21: PM1 status has RTC_STS and WAK_STS, and the marker the guest sets after its S3 write is still 0.
            Assert.True(PlatformGuests.ExitStatus(S3Guests.ResumedExit) == r.ExitCode, $"exit {r.ExitCode}; stderr: {r.Stderr}");
            Assert.Equal("", r.Stderr);
        });
    }

    /// <summary>Runs <paramref name="body"/> with <paramref name="image"/> written to a kernel file in a temporary directory (both passed).</summary>
    private static void WithKernel(byte[] image, Action<string, string> body)
    {
        var dir = Directory.CreateTempSubdirectory("qemu-kernel-");
        try
        {
            var kernel = Path.Combine(dir.FullName, "kernel.flat");
            File.WriteAllBytes(kernel, image);
            body(kernel, dir.FullName);
        }
        finally { dir.Delete(true); }
    }

    [GdbFact]
    public void Minus_S_with_minus_gdb_holds_the_kernel_until_gdb_continues_and_the_debug_exit_status_comes_back()
    {
        WithKernel(PlatformGuests.MultibootFlatKernel(), (kernel, dir) =>
        {
            var socket = Path.Combine(dir, "gdb.sock");
            using var vm = new Kvmactors.Running("qemu", "-kernel", kernel, "-append", "held", "-S", "-gdb", $"unix:{socket},server=on,wait=off",
                "-device", "isa-debug-exit,iobase=0xf4,iosize=4", "-serial", "stdio");
            Assert.True(vm.WaitUntil(_ => File.Exists(socket), TimeSpan.FromSeconds(30)), $"no gdb socket; stderr: {vm.Stderr}");
            Assert.Equal("", vm.Stdout); // -S: the kernel has not run

            var gdb = new ProcessStartInfo(GdbAvailability.Path) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
            foreach (var a in new[] { "-batch", "-nx", "-ex", $"target remote {socket}", "-ex", "continue" }) gdb.ArgumentList.Add(a);
            var g = Kvmactors.RunProcess(gdb, TimeSpan.FromSeconds(60));
            var ended = vm.WaitForExit(TimeSpan.FromSeconds(30));
            Assert.True(PlatformGuests.ExitStatus(PlatformGuests.MultibootExit) == ended.ExitCode,
                $"exit {ended.ExitCode}; stderr: {ended.Stderr}; gdb: {g.Stdout}{g.Stderr}");
            Assert.StartsWith($"{kernel} held", ended.Stdout);
        });
    }
}

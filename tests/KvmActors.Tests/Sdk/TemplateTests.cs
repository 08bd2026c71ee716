using System.Diagnostics;
using KvmActors.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace KvmActors.Tests.Sdk;

/// <summary>
/// The device SDK as a plug-in author gets it: pack KvmActors.Sdk and KvmActors.Templates, install the template
/// into a private hive (the machine's template cache is not touched), `dotnet new kvmactors-device`, build the
/// new plug-in against the packed SDK (a private nuget.config: the packs, then the machine's package cache and
/// its normal source), run its generated unit tests, and load it into a real guest run by the CLI.
/// </summary>
public sealed class TemplateTests(ITestOutputHelper output)
{
    // The guest reads the device's ID register (port 0x520), stores it in SCRATCH (0x521), reads it back and
    // ends through debug-exit with it: mov dx,0x520; in al,dx; mov dx,0x521; out dx,al; in al,dx;
    // mov dx,0xf4; out dx,al; jmp $
    private static readonly byte[] Guest = [0xBA, 0x20, 0x05, 0xEC, 0xBA, 0x21, 0x05, 0xEE, 0xEC, 0xBA, 0xF4, 0x00, 0xEE, 0xEB, 0xFE];

    [KvmFact]
    public void A_plugin_made_with_dotnet_new_builds_against_the_packed_sdk_and_runs_in_a_guest()
    {
        var root = Directory.CreateTempSubdirectory("kvmactors-template-").FullName;
        try
        {
            var watch = Stopwatch.StartNew();
            // Pack from a copy of the sources, so the work tree's obj/ folders are left as they are.
            var src = Path.Combine(root, "src");
            foreach (var dir in new[] { "src/Runtime/Core", "src/Runtime/Sdk", "src/Devices/Templates" })
                CopySources(Path.Combine(RepoRoot.Path, dir), Path.Combine(src, dir));
            File.Copy(Path.Combine(RepoRoot.Path, "Directory.Build.props"), Path.Combine(src, "Directory.Build.props"));
            var feed = Path.Combine(root, "feed");
            var packs = new[] { "src/Runtime/Sdk", "src/Devices/Templates" }
                .Select(p => Task.Run(() => Dotnet(src, "pack", p, "-o", feed, "--disable-build-servers")))
                .ToArray();
            Task.WaitAll(packs);
            var template = Assert.Single(Directory.GetFiles(feed, "KvmActors.Templates.*.nupkg"));
            var sdk = Assert.Single(Directory.GetFiles(feed, "KvmActors.Sdk.*.nupkg"));
            Assert.Equal(Path.GetFileName(template)["KvmActors.Templates.".Length..], Path.GetFileName(sdk)["KvmActors.Sdk.".Length..]);

            var hive = Path.Combine(root, "hive");
            Dotnet(root, "new", "install", template, "--debug:custom-hive", hive);
            var gen = Path.Combine(root, "gen");
            Dotnet(root, "new", "kvmactors-device", "-n", "Blinker", "-o", gen, "--debug:custom-hive", hive);
            Assert.Contains("[DeviceType(\"blinker\")]", File.ReadAllText(Path.Combine(gen, "Blinker", "BlinkerActor.cs")));
            Assert.DoesNotContain("KvmActors.Runtime", File.ReadAllText(Path.Combine(gen, "Blinker", "Blinker.csproj")));

            File.WriteAllText(Path.Combine(gen, "nuget.config"), $"""
                <?xml version="1.0" encoding="utf-8"?>
                <configuration>
                  <config><add key="globalPackagesFolder" value="{Path.Combine(root, "packages")}" /></config>
                  <packageSources>
                    <clear />
                    <add key="kvmactors-packs" value="{feed}" />
                    <add key="machine-cache" value="{Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages")}" />
                    <add key="nuget.org" value="https://api.nuget.org/v3/index.json" />
                  </packageSources>
                </configuration>
                """);
            Dotnet(gen, "build", "Blinker.Tests", "--disable-build-servers");
            Dotnet(gen, "test", "Blinker.Tests", "--no-build");

            // The plug-in's output holds the plug-in alone: the SDK and Akka are the host's.
            var plugins = Path.Combine(gen, "Blinker", "bin", "Debug", "net10.0");
            Assert.True(File.Exists(Path.Combine(plugins, "Blinker.dll")));
            Assert.False(File.Exists(Path.Combine(plugins, "KvmActors.Sdk.dll")));
            Assert.False(File.Exists(Path.Combine(plugins, "Akka.dll")));

            var r = Kvmactors.Run("run", "hocon/guests/debug-exit.conf",
                "--set", $"guest.image.inline=\"{Guests.Hex(Guest)}\"",
                "--set", "guest.cpu.registers.rsp=0x8000",
                "--set", "guest.devices.blink.type=blinker",
                "--set", "guest.devices.blink.ports=[\"0x520-0x527\"]",
                "--set", "guest.devices.blink.options.id=0x21",
                "--set", $"kvmactors.devices.plugin-directories=[\"{plugins}\"]",
                "--timeout", "30s");
            output.WriteLine(r.Stderr);
            Assert.Equal((0x21 << 1) | 1, r.ExitCode); // the guest read the id option back through SCRATCH
            Assert.Equal("", r.Stdout);
            output.WriteLine($"pack, new, build, test and run: {watch.Elapsed.TotalSeconds:F1} s");
        }
        finally { Directory.Delete(root, recursive: true); }
    }

    private static void CopySources(string from, string to)
    {
        foreach (var file in Directory.EnumerateFiles(from, "*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = 0 }))
        {
            var rel = Path.GetRelativePath(from, file);
            if (rel.Split(Path.DirectorySeparatorChar).Any(p => p is "bin" or "obj")) continue;
            var dest = Path.Combine(to, rel);
            Directory.CreateDirectory(Path.GetDirectoryName(dest)!);
            File.Copy(file, dest);
        }
    }

    private void Dotnet(string workingDirectory, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet", args)
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["DOTNET_NOLOGO"] = "1";
        psi.Environment["DOTNET_SKIP_FIRST_TIME_EXPERIENCE"] = "1";
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromSeconds(240)))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail($"dotnet {string.Join(' ', args)} did not finish within 240 s");
        }
        p.WaitForExit();
        if (p.ExitCode != 0)
            Assert.Fail($"dotnet {string.Join(' ', args)} exited {p.ExitCode}:\n{stdout.Result}\n{stderr.Result}");
    }
}

using System.Diagnostics;
using KvmActors.Tests.DevicesOnKvm;
using KvmActors.Tests.Support;
using Xunit;

namespace KvmActors.Tests.Packaging;

/// <summary>
/// The .NET tool package, end to end: <c>dotnet pack</c> of src/Host into a temp folder,
/// <c>dotnet tool install --tool-path</c> from that folder only, then the installed <c>kvmactors</c> command
/// runs the seed guest and a guest using the sample plug-in. The pack uses the configuration the tests were
/// built in, so only the linux-x64 publish and its ReadyToRun compilation are new work (a Release pack from
/// scratch takes minutes on 2 CPUs).
/// </summary>
public sealed class ToolPackageTests
{
    // A bound, not an expectation: the pack ReadyToRun-compiles ~45 assemblies, minutes on 2 loaded CPUs.
    private static readonly TimeSpan Limit = TimeSpan.FromMinutes(10);

    [KvmFact]
    public void The_packed_tool_installs_and_runs_the_seed_guest_and_a_plugin_device()
    {
        var work = Directory.CreateTempSubdirectory("kvmactors-tool-");
        try
        {
            var artifacts = Path.Combine(work.FullName, "artifacts");
            Dotnet(RepoRoot.Path, "pack", "src/Host", "-c", BuildConfiguration, "-o", artifacts);
            var packages = Directory.GetFiles(artifacts, "*.nupkg").Select(Path.GetFileName).Order().ToList();
            // A pointer package and the linux-x64 one (RID-specific, ReadyToRun).
            Assert.Contains(packages, p => p!.StartsWith("kvmactors.linux-x64."));

            // Only the artifacts folder as a source: the install must not depend on a feed.
            var nugetConfig = Path.Combine(work.FullName, "nuget.config");
            File.WriteAllText(nugetConfig, $"""
                <?xml version="1.0" encoding="utf-8"?>
                <configuration><packageSources><clear /><add key="artifacts" value="{artifacts}" /></packageSources></configuration>
                """);
            var tools = Path.Combine(work.FullName, "tools");
            Dotnet(work.FullName, "tool", "install", "kvmactors", "--tool-path", tools, "--configfile", nugetConfig);
            var kvmactors = Path.Combine(tools, "kvmactors");
            Assert.True(File.Exists(kvmactors), $"no {kvmactors} after install");
            // The installed program is ReadyToRun code (a R2R image has a managed native header).
            var installed = Directory.GetFiles(tools, "kvmactors.dll", SearchOption.AllDirectories).Single();
            Assert.True(IsReadyToRun(installed), $"{installed} is not ReadyToRun-compiled");

            var seed = Run(kvmactors, work.FullName, "run");
            Assert.True(seed.ExitCode == 0, $"kvmactors run: exit {seed.ExitCode}\n{seed.Stderr}");
            Assert.Equal("4\n", seed.Stdout);

            // The plug-in from a folder, as a guest file names it.
            var guest = Path.Combine(work.FullName, "counter.conf");
            File.WriteAllText(guest, SamplePluginTests.Conf(DeviceGuests.CounterOnPorts(0x520), "unused", $$"""
                devices.com1.options.sink = stdout
                devices.counter {
                  type = sample-counter
                  ports = ["0x520-0x527"]
                  options {
                    initial = 0x1000
                    step = 0x10
                  }
                }
                """) + $"\nkvmactors.devices.plugin-directories = [\"{SamplePluginTests.PluginDir}\"]\n");
            var plugin = Run(kvmactors, work.FullName, "run", guest);
            Assert.True(plugin.ExitCode == 0, $"kvmactors run counter.conf: exit {plugin.ExitCode}\n{plugin.Stderr}");
            Assert.Equal("00001105\n00001115\n00000002\n00000025\n00001000\n", plugin.Stdout);
        }
        finally
        {
            work.Delete(recursive: true);
        }
    }

    /// <summary>Debug or Release: the folder the test assembly was built into (bin/CONFIG/net10.0).</summary>
    private static string BuildConfiguration => new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar)).Parent!.Name;

    private static void Dotnet(string dir, params string[] args)
    {
        var r = Run(DotnetHost(), dir, args);
        Assert.True(r.ExitCode == 0, $"dotnet {string.Join(' ', args)}: exit {r.ExitCode}\n{r.Stdout}\n{r.Stderr}");
    }

    private static Kvmactors.Result Run(string file, string dir, params string[] args)
    {
        var psi = new ProcessStartInfo(file, args)
        {
            RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true,
            UseShellExecute = false, WorkingDirectory = dir,
        };
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["DOTNET_NOLOGO"] = "1";
        // The test host's MSBuild settings would leak into the child's pack (and its nodes outlive it).
        foreach (var key in new[] { "MSBuildExtensionsPath", "MSBuildSDKsPath", "MSBUILD_EXE_PATH" }) psi.Environment.Remove(key);
        psi.Environment["MSBUILDDISABLENODEREUSE"] = "1";
        return Kvmactors.RunProcess(psi, Limit);
    }

    private static bool IsReadyToRun(string dll)
    {
        using var pe = new System.Reflection.PortableExecutable.PEReader(File.OpenRead(dll));
        return pe.PEHeaders.CorHeader?.ManagedNativeHeaderDirectory.Size > 0;
    }

    private static string DotnetHost() =>
        Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host && File.Exists(host) ? host : "dotnet";
}

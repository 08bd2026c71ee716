using System.Diagnostics;

namespace KvmActors.Tests.Support;

/// <summary>Runs the real kvmactors program (the Host build copied beside the tests) as a child process.</summary>
public static class Kvmactors
{
    public sealed record Result(int ExitCode, string Stdout, string Stderr, TimeSpan Elapsed);

    public static Result Run(params string[] args) => Run(TimeSpan.FromSeconds(60), args);

    public static Result Run(TimeSpan limit, params string[] args)
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "kvmactors.dll");
        var psi = new ProcessStartInfo(DotnetHost(), [dll, .. args])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            WorkingDirectory = RepoRoot.Path,
        };
        var sw = Stopwatch.StartNew();
        using var p = Process.Start(psi)!;
        p.StandardInput.Close();
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(limit))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"kvmactors {string.Join(' ', args)} did not exit within {limit}");
        }
        p.WaitForExit();
        return new Result(p.ExitCode, stdout.Result, stderr.Result, sw.Elapsed);
    }

    private static string DotnetHost() =>
        Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host && File.Exists(host) ? host : "dotnet";
}

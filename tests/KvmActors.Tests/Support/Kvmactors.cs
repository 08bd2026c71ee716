using System.Diagnostics;

namespace KvmActors.Tests.Support;

/// <summary>Runs the real kvmactors program (the Host build copied beside the tests) as a child process.</summary>
public static class Kvmactors
{
    public sealed record Result(int ExitCode, string Stdout, string Stderr, TimeSpan Elapsed);

    public static Result Run(params string[] args) => Run(TimeSpan.FromSeconds(60), args);

    public static Result Run(TimeSpan limit, params string[] args) => RunCore(limit, null, args);

    /// <summary>Runs kvmactors with <paramref name="stdin"/> (one byte a char, Latin-1) on its standard input, then closes it.</summary>
    public static Result RunWithStdin(string stdin, params string[] args) => RunCore(TimeSpan.FromSeconds(60), stdin, args);

    /// <summary>How kvmactors is started (stdin, stdout and stderr redirected), for tests that drive the process themselves.</summary>
    public static ProcessStartInfo StartInfo(params string[] args) =>
        new(DotnetHost(), [Path.Combine(AppContext.BaseDirectory, "kvmactors.dll"), .. args])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            WorkingDirectory = RepoRoot.Path,
        };

    private static Result RunCore(TimeSpan limit, string? stdin, string[] args) => RunProcess(StartInfo(args), limit, stdin);

    /// <summary>Runs <paramref name="psi"/> (all three streams redirected) to its end, killing it after <paramref name="limit"/>.</summary>
    public static Result RunProcess(ProcessStartInfo psi, TimeSpan limit, string? stdin = null)
    {
        var sw = Stopwatch.StartNew();
        using var p = Process.Start(psi)!;
        if (stdin is not null)
        {
            try
            {
                p.StandardInput.BaseStream.Write(System.Text.Encoding.Latin1.GetBytes(stdin));
                p.StandardInput.BaseStream.Flush();
            }
            catch (IOException) { /* it exited without reading all of it: the result shows why */ }
        }
        p.StandardInput.Close();
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(limit))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{Path.GetFileName(psi.FileName)} {string.Join(' ', psi.ArgumentList)} did not exit within {limit}");
        }
        p.WaitForExit();
        return new Result(p.ExitCode, stdout.Result, stderr.Result, sw.Elapsed);
    }

    private static string DotnetHost() =>
        Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host && File.Exists(host) ? host : "dotnet";
}

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

    /// <summary>
    /// Runs <paramref name="script"/> with bash in the repository root, where <c>$KVMACTORS</c> starts the program
    /// (for pipelines such as <c>| head -c 100</c> and limits such as <c>ulimit -n</c>). The result is bash's.
    /// </summary>
    public static Result Shell(string script, TimeSpan? limit = null)
    {
        var psi = new ProcessStartInfo("bash", ["-c", script])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            WorkingDirectory = RepoRoot.Path,
        };
        psi.Environment["KVMACTORS"] = $"{DotnetHost()} {Path.Combine(AppContext.BaseDirectory, "kvmactors.dll")}";
        return Wait(psi, limit ?? TimeSpan.FromSeconds(60), "bash -c " + script);
    }

    /// <summary>A started kvmactors whose output is collected as it comes, for tests that signal it while it runs.</summary>
    public sealed class Running : IDisposable
    {
        private readonly System.Text.StringBuilder _stdout = new(), _stderr = new();
        private readonly Task _reading;
        public Process Process { get; }
        public Stopwatch Clock { get; } = Stopwatch.StartNew();

        public Running(params string[] args)
        {
            Process = Process.Start(StartInfo(args))!;
            Process.StandardInput.Close();
            _reading = Task.WhenAll(Pump(Process.StandardOutput, _stdout), Pump(Process.StandardError, _stderr));
        }

        public string Stdout { get { lock (_stdout) return _stdout.ToString(); } }
        public string Stderr { get { lock (_stderr) return _stderr.ToString(); } }

        /// <summary>Polls (bounded) until <paramref name="ready"/> holds; false if it never did.</summary>
        public bool WaitUntil(Func<Running, bool> ready, TimeSpan limit)
        {
            var sw = Stopwatch.StartNew();
            while (!ready(this))
            {
                if (sw.Elapsed > limit || Process.HasExited) return ready(this);
                Thread.Sleep(20);
            }
            return true;
        }

        /// <summary>Whether the process has a KVM VM open (its setup has begun): an fd to anon_inode:kvm-vm.</summary>
        public bool HasKvmVm()
        {
            try
            {
                return Directory.EnumerateFileSystemEntries($"/proc/{Process.Id}/fd")
                    .Any(fd => new FileInfo(fd).LinkTarget?.Contains("kvm-vm") == true);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return false; }
        }

        public void Signal(int signal) => Kill(Process.Id, signal);

        public Result WaitForExit(TimeSpan limit)
        {
            if (!Process.WaitForExit(limit))
            {
                Process.Kill(entireProcessTree: true);
                throw new TimeoutException($"kvmactors did not exit within {limit}; stderr: {Stderr}");
            }
            var elapsed = Clock.Elapsed;
            _reading.Wait(limit);
            return new Result(Process.ExitCode, Stdout, Stderr, elapsed);
        }

        public void Dispose()
        {
            if (!Process.HasExited) Process.Kill(entireProcessTree: true);
            Process.Dispose();
        }

        private static async Task Pump(StreamReader from, System.Text.StringBuilder to)
        {
            var buffer = new char[4096];
            int n;
            while ((n = await from.ReadAsync(buffer)) > 0)
                lock (to) to.Append(buffer, 0, n);
        }
    }

    /// <summary>Sends <paramref name="signal"/> to process <paramref name="pid"/> (kill(2)).</summary>
    public static void Kill(int pid, int signal) => _ = kill(pid, signal);

    [System.Runtime.InteropServices.DllImport("libc")]
    private static extern int kill(int pid, int signal);

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
        return Collect(p, sw, limit, $"{Path.GetFileName(psi.FileName)} {string.Join(' ', psi.ArgumentList)}");
    }

    private static Result Wait(ProcessStartInfo psi, TimeSpan limit, string what)
    {
        var sw = Stopwatch.StartNew();
        using var p = Process.Start(psi)!;
        p.StandardInput.Close();
        return Collect(p, sw, limit, what);
    }

    private static Result Collect(Process p, Stopwatch sw, TimeSpan limit, string what)
    {
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(limit))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{what} did not exit within {limit}");
        }
        var elapsed = sw.Elapsed;
        p.WaitForExit();
        return new Result(p.ExitCode, stdout.Result, stderr.Result, elapsed);
    }

    private static string DotnetHost() =>
        Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host && File.Exists(host) ? host : "dotnet";
}

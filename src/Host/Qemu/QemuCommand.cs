using KvmActors.Sdk;

namespace KvmActors.Host.Qemu;

/// <summary>
/// <c>kvmactors qemu ARGS</c> (and the <c>kvmactors-qemu</c> wrapper): runs a test kernel from a QEMU command line.
/// The arguments become a generated guest file that the ordinary <c>run</c> command runs.
/// </summary>
/// <remarks>
/// Harnesses read QEMU's exit status and its stderr: kvm-unit-tests counts status 1 (debug-exit 0) as a pass
/// only when stderr stayed empty. So the run's own stderr (end summary, logs) is held back and written out only
/// when the VM did not end through the guest's own request (debug-exit, power-off), i.e. when something failed.
/// A bad command line or config exits 1, as QEMU does.
/// </remarks>
public static class QemuCommand
{
    public const int BadCommandLine = 1;

    public static async Task<int> RunAsync(string[] args)
    {
        QemuInvocation q;
        try { q = QemuCommandLine.Parse(args); }
        catch (QemuUsageException e)
        {
            Console.Error.WriteLine($"kvmactors-qemu: {e.Message}");
            return BadCommandLine;
        }
        if (q.Print is { } text)
        {
            Console.Out.Write(text);
            return 0;
        }

        // Harnesses probe their options with a kernel that does not exist and look for QEMU's message.
        foreach (var (what, file) in new[] { ("kernel", q.Kernel), ("initrd", q.Initrd) })
            if (file is not null && !File.Exists(file))
            {
                Console.Error.WriteLine($"kvmactors-qemu: could not load {what} '{file}': No such file or directory");
                return BadCommandLine;
            }

        var dir = Directory.CreateTempSubdirectory("kvmactors-qemu-");
        var guestFile = Path.Combine(dir.FullName, "guest.conf");
        await File.WriteAllTextAsync(guestFile, QemuCommandLine.ToHocon(q, Environment.CurrentDirectory));
        var realError = Console.Error;
        var held = new StringWriter();
        Console.SetError(TextWriter.Synchronized(held));
        RunCommand.KeepCallersStderr = true;
        int status;
        try
        {
            status = await Cli.RunAsync(["run", guestFile]);
        }
        finally
        {
            Console.SetError(realError);
            dir.Delete(recursive: true);
        }
        // Ended at the guest's own request (debug-exit, S5, or S3 with on-suspend = end): stderr stays quiet.
        if (RunCommand.LastEndReason is not (VmEndReason.GuestExit or VmEndReason.Halted)) await realError.WriteAsync(held.ToString());
        return status == ExitCodes.Usage ? BadCommandLine : status;
    }
}

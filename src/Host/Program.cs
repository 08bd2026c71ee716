using KvmActors.Host;

// kvmactors: stdout carries exactly the guest's serial output; everything else goes to stderr.
// The fd check comes first and alone: this method's code must not need any other assembly loaded.
OpenFiles.ExitIfTooLowToStart();
// kvmactors run: no Reflection.Emit in this process. Akka's HOCON durations use a RegexOptions.Compiled regex and its
// ReceiveActors compile expression trees: emitted and JIT-compiled, they cost 30-40 ms of every run's start-up;
// without dynamic code the regex is interpreted and the expressions too. Only for run: serve and the fleet
// serialize with Newtonsoft.Json, whose DynamicMethods need it. (Set before anything reads RuntimeFeature.)
if (args is ["run", ..]) AppContext.SetSwitch("System.Runtime.CompilerServices.RuntimeFeature.IsDynamicCodeSupported", false);
StartupTrace.Mark("main");
var exitStatus = await Cli.RunAsync(args);
StartupTrace.Mark("exit");
Environment.Exit(exitStatus);

namespace KvmActors.Host
{
    public static class Cli
    {
        /// <summary>The whole program; the returned status is the process's (see the README's exit-status table).</summary>
        public static async Task<int> RunAsync(string[] args)
        {
            ErrorReport.GuardProcess();
            int status;
            try
            {
                status = await CommandLine.InvokeAsync(args);
            }
            catch (Exception e)
            {
                status = ErrorReport.Report(e);
            }
            try { Console.Error.Flush(); }
            catch (IOException) { }
            // The caller exits with Environment.Exit, not a return: vCPU threads may still be inside KVM_RUN (a VM that
            // did not stop within the grace) and a device may be blocked writing a full stdout; the exit ends them.
            return status;
        }
    }
}

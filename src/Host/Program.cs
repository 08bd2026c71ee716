using KvmActors.Host;

// kvmactors: stdout carries exactly the guest's serial output; everything else goes to stderr.
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
// Environment.Exit, not a return: vCPU threads may still be inside KVM_RUN (a VM that did not stop within the
// grace) and a device may be blocked writing a full stdout; the exit ends them instead of waiting for them.
Environment.Exit(status);

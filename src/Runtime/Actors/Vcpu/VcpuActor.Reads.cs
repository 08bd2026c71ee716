using KvmActors.Sdk;

namespace KvmActors.Runtime.Vcpu;

// The read path, actor side: while a device read (IN, MMIO read) is out, the vCPU waits in AwaitingRead, still
// serving its mailbox (stop, pause); the answer with the current sequence number completes the exit (or sends
// the next item of a rep-string IN). Older answers (a read abandoned by a restart) are dropped by Common.
public sealed partial class VcpuActor
{
    private bool _awaitingRead; // in AwaitingRead (Akka's Become has no "current behaviour" to ask)

    private void AwaitingRead(object message)
    {
        NoteThread();
        switch (message)
        {
            case ReadCompleted done when done.Seq == _progress.ReadSeq:
                var result = _exits.CompleteRead(_vcpu.Exit, done.Value);
                if (result.Outcome != ExitOutcome.AwaitingRead)
                {
                    _awaitingRead = false;
                    Become(OnReceive);
                }
                Apply(result);
                CompleteExitIfRequested();
                break;
            case RunGuest:
                break;
            default:
                Common(message);
                break;
        }
    }
}

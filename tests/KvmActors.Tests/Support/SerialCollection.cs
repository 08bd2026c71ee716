using Xunit;

namespace KvmActors.Tests.Support;

/// <summary>
/// Tests that count process-wide resources (fds, threads, mappings) run alone: xunit runs other test
/// classes in parallel, and their VMs would move the counts.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class SerialCollection
{
    public const string Name = "serial (process-wide counts)";
}

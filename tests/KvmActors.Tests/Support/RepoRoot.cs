namespace KvmActors.Tests.Support;

/// <summary>The repository root (the folder holding KvmActors.sln), found from the test's output folder.</summary>
public static class RepoRoot
{
    public static string Path { get; } = Find();

    private static string Find()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(System.IO.Path.Combine(dir.FullName, "KvmActors.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("KvmActors.sln not found above " + AppContext.BaseDirectory);
    }
}

using System.Net;
using System.Net.Sockets;

namespace KvmActors.Runtime.Debug;

/// <summary>
/// A gdb stub for the VM (<c>guest.gdb</c> / <c>--gdb</c>): where it listens, whether the guest waits for gdb's
/// first continue before any vCPU runs (QEMU's -S), and whether a non-loopback address is allowed.
/// </summary>
public sealed record GdbSpec(string Listen, bool Wait = false, bool AllowRemote = false)
{
    /// <summary>
    /// The endpoint of <c>tcp:HOST:PORT</c> (<c>tcp::PORT</c> is loopback) or <c>unix:PATH</c>; null with the
    /// problem when the address is malformed or names a non-loopback host without <see cref="AllowRemote"/>.
    /// </summary>
    public EndPoint? TryEndPoint(out string? problem)
    {
        problem = null;
        if (Listen.StartsWith("unix:", StringComparison.Ordinal))
        {
            var path = Listen["unix:".Length..];
            if (path.Length == 0) { problem = "unix: needs a socket path"; return null; }
            return new UnixDomainSocketEndPoint(path);
        }
        if (!Listen.StartsWith("tcp:", StringComparison.Ordinal))
        {
            problem = $"'{Listen}' is not tcp:HOST:PORT or unix:PATH";
            return null;
        }
        var rest = Listen["tcp:".Length..];
        var colon = rest.LastIndexOf(':');
        if (colon < 0 || !ushort.TryParse(rest[(colon + 1)..], out var port))
        {
            problem = $"'{Listen}': the port must be a number 0..65535 (tcp:HOST:PORT)";
            return null;
        }
        var host = rest[..colon].Trim('[', ']');
        IPAddress address;
        if (host.Length == 0 || host == "localhost") address = IPAddress.Loopback;
        else if (!IPAddress.TryParse(host, out address!))
        {
            problem = $"'{host}' is not an IP address (or localhost)";
            return null;
        }
        if (!IPAddress.IsLoopback(address) && !AllowRemote)
        {
            problem = $"{address} is not a loopback address: a debugger can read and write all guest memory; allow it explicitly (--gdb-allow-remote)";
            return null;
        }
        return new IPEndPoint(address, port);
    }
}

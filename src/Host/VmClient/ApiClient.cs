using System.Net.Sockets;

namespace KvmActors.Host.VmClient;

/// <summary>An HttpClient for a kvmactors serve API: over its Unix socket, or over TCP (http://HOST:PORT).</summary>
public static class ApiClient
{
    public static HttpClient ForSocket(string socketPath, TimeSpan? timeout = null)
    {
        var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, ct) =>
            {
                var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                try
                {
                    await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), ct);
                    return new NetworkStream(socket, ownsSocket: true);
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }
            },
        };
        return new HttpClient(handler) { BaseAddress = new Uri("http://kvmactors/"), Timeout = timeout ?? Timeout.InfiniteTimeSpan };
    }

    public static HttpClient ForHost(string host, TimeSpan? timeout = null)
    {
        var url = host.StartsWith("tcp:") ? "http://" + host[4..] : host.Contains("://") ? host : "http://" + host;
        return new HttpClient { BaseAddress = new Uri(url.TrimEnd('/') + "/"), Timeout = timeout ?? Timeout.InfiniteTimeSpan };
    }
}

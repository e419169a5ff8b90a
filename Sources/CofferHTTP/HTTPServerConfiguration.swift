import NIOCore

/// How the HTTP server listens and what it accepts.
public struct HTTPServerConfiguration: Sendable {
    public var host: String
    public var port: Int
    /// Largest body accepted; larger ones get 413 before they are read, and the connection closes.
    public var maxBlobSize: Int64
    /// A connection with neither a read nor a completed write for this long is closed.
    public var idleTimeout: TimeAmount
    /// How long a graceful shutdown waits for in-flight requests before closing their connections.
    public var shutdownGracePeriod: TimeAmount
    public var backlog: Int32

    public init(
        host: String = "0.0.0.0",
        port: Int = 7777,
        maxBlobSize: Int64 = 5 << 30,
        idleTimeout: TimeAmount = .seconds(60),
        shutdownGracePeriod: TimeAmount = .seconds(10),
        backlog: Int32 = 1024
    ) {
        self.host = host
        self.port = port
        self.maxBlobSize = maxBlobSize
        self.idleTimeout = idleTimeout
        self.shutdownGracePeriod = shutdownGracePeriod
        self.backlog = backlog
    }
}

import CofferCore
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import Synchronization

/// The HTTP/1.1 server on SwiftNIO that serves any ``BlobStore`` under `/store/`, `/object/` and `/api/fileserver/`,
/// plus `GET /health`. A `Service`: `run()` serves until graceful shutdown, then stops accepting, lets in-flight
/// requests finish (bounded by the grace period) and returns.
public final class CofferHTTPServer: Service, Sendable {
    private let configuration: HTTPServerConfiguration
    private let processor: RequestProcessor
    private let group: any EventLoopGroup
    private let logger: Logger
    private let state = Mutex<(any Channel)?>(nil)
    private let connections = ConnectionTracker()

    public init(
        store: any BlobStore,
        configuration: HTTPServerConfiguration,
        logger: Logger,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) {
        self.configuration = configuration
        self.group = group
        self.logger = logger
        self.processor = RequestProcessor(
            store: store, configuration: configuration, logger: logger, fallbackLoop: group.next())
    }

    /// When accepting fails (out of descriptors: EMFILE, ENFILE; or memory), stop accepting for 100 ms instead of
    /// spinning on the listener, and say so in the log, at most once every 5 s: new connections wait in the backlog.
    static func acceptBackoff(logger: Logger) -> AcceptBackoffHandler {
        // Called on the listener's event loop only.
        final class LastWarning { var at: NIODeadline? }
        let lastWarning = LastWarning()
        return AcceptBackoffHandler(shouldForwardIOErrorCaught: false) { error in
            let now = NIODeadline.now()
            if lastWarning.at.map({ now - $0 >= .seconds(5) }) ?? true {
                lastWarning.at = now
                let reason =
                    error.errnoCode == EMFILE || error.errnoCode == ENFILE
                    ? "out of file descriptors" : "accept failed"
                logger.error(
                    "cannot accept connections: \(reason); new connections wait until descriptors free up",
                    metadata: ["errno": "\(error.errnoCode)", "error": "\(error)"])
            }
            return .milliseconds(100)
        }
    }

    /// Binds and starts accepting; returns the bound address (useful with port 0).
    @discardableResult
    public func start() async throws -> SocketAddress {
        let connections = self.connections
        let processor = self.processor
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: configuration.backlog)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .serverChannelInitializer { [logger] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Self.acceptBackoff(logger: logger))
                }
            }
            .childChannelInitializer { channel in
                connections.add(channel)
                return channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    // Outbound header validation is off: every header is built here from validated values.
                    try sync.configureHTTPServerPipeline(
                        withPipeliningAssistance: true, withErrorHandling: false, withOutboundHeaderValidation: false)
                    try sync.addHandler(BlobHTTPHandler(processor: processor))
                }
            }
            .bind(host: configuration.host, port: configuration.port)
            .get()
        state.withLock { $0 = channel }
        let address = channel.localAddress!
        logger.info("listening", metadata: ["address": "\(address)"])
        return address
    }

    /// How many client connections are open now.
    public var openConnections: Int { connections.count }

    /// The bound address once started.
    public var localAddress: SocketAddress? { state.withLock { $0?.localAddress } }

    /// Stops accepting, waits (up to the grace period) for open requests to finish, and closes every connection.
    public func shutdown() async {
        guard
            let channel = state.withLock({ s -> (any Channel)? in
                defer { s = nil }
                return s
            })
        else { return }
        try? await channel.close()
        let loop = group.next()
        let done = loop.makePromise(of: Void.self)
        connections.quiesce(done)
        let timeout = loop.scheduleTask(in: configuration.shutdownGracePeriod) {
            self.logger.warning("grace period over; closing connections still open")
            self.connections.closeAll()
            done.succeed(())
        }
        try? await done.futureResult.get()
        timeout.cancel()
        logger.info("HTTP server stopped")
    }

    public func run() async throws {
        if state.withLock({ $0 == nil }) { try await start() }
        try? await gracefulShutdown()
        await shutdown()
    }
}

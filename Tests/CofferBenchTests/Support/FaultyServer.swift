import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// A tiny in-memory blob server (PUT, POST, GET, DELETE on any path) that can misbehave on reads.
final class FaultyServer: Sendable {
    enum Fault: Sendable {
        /// Answers truthfully.
        case none
        /// Flips one bit of every GET body.
        case flipByte
        /// Answers every GET with 404, though writes are acknowledged.
        case forget
    }

    let port: Int
    private let channel: any Channel
    private let group: MultiThreadedEventLoopGroup

    private init(port: Int, channel: any Channel, group: MultiThreadedEventLoopGroup) {
        self.port = port
        self.channel = channel
        self.group = group
    }

    static func start(_ fault: Fault) async throws -> FaultyServer {
        let blobs = Blobs()
        // Its own event loop, not the shared singleton the other suites' servers and clients run on.
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(FaultyHandler(blobs: blobs, fault: fault))
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        return FaultyServer(port: channel.localAddress!.port!, channel: channel, group: group)
    }

    func stop() async {
        try? await channel.close()
        try? await group.shutdownGracefully()
    }
}

private final class Blobs: Sendable {
    let state = Mutex<[String: ByteBuffer]>([:])
}

private final class FaultyHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let blobs: Blobs
    private let fault: FaultyServer.Fault
    private var head: HTTPRequestHead?
    private var body = ByteBuffer()

    init(blobs: Blobs, fault: FaultyServer.Fault) {
        self.blobs = blobs
        self.fault = fault
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            body.clear()
        case .body(var buffer):
            body.writeBuffer(&buffer)
        case .end:
            guard let head else { return }
            let (status, answer) = respond(head)
            var responseHead = HTTPResponseHead(version: .http1_1, status: status)
            responseHead.headers.add(name: "Content-Length", value: String(answer?.readableBytes ?? 0))
            context.write(wrapOutboundOut(.head(responseHead)), promise: nil)
            if let answer { context.write(wrapOutboundOut(.body(.byteBuffer(answer))), promise: nil) }
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }

    private func respond(_ head: HTTPRequestHead) -> (HTTPResponseStatus, ByteBuffer?) {
        let body = self.body
        return blobs.state.withLock { blobs in
            let existing = blobs[head.uri]
            switch head.method {
            case .PUT:
                blobs[head.uri] = body
                return (existing == nil ? .created : .noContent, nil)
            case .POST:
                guard existing == nil else { return (.conflict, nil) }
                blobs[head.uri] = body
                return (.created, nil)
            case .DELETE:
                return (blobs.removeValue(forKey: head.uri) == nil ? .notFound : .noContent, nil)
            case .GET:
                guard var stored = existing, fault != .forget else { return (.notFound, nil) }
                if fault == .flipByte, stored.readableBytes > 0 {
                    let at = stored.readerIndex + stored.readableBytes / 2
                    stored.setInteger(stored.getInteger(at: at, as: UInt8.self)! ^ 0x10, at: at)
                }
                return (.ok, stored)
            default:
                return (.methodNotAllowed, nil)
            }
        }
    }
}

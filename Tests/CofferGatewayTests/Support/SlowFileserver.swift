import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// The one "volume" several ``SlowFileserver``s share: names to bytes.
final class FileserverVolume: Sendable {
    private let files = Mutex<[String: [UInt8]]>([:])

    func read(_ name: String) -> [UInt8]? { files.withLock { $0[name] } }
    func write(_ name: String, _ bytes: [UInt8]) { files.withLock { $0[name] = bytes } }
    func remove(_ name: String) -> Bool { files.withLock { $0.removeValue(forKey: name) != nil } }
    var count: Int { files.withLock { $0.count } }
}

/// A slow backend file server like the fileserver challenge's: `PUT`/`GET`/`DELETE /api/fileserver/<name>` over a
/// shared ``FileserverVolume``, each answer scheduled ``delay`` after the request arrived (on the event loop, never
/// blocking), and `429 Too Many Requests` at once for a request that arrives while more than ``limit`` are in flight.
/// No `ETag`, no `Last-Modified`; `HEAD` is refused with 405. It records the most requests it ever had in flight.
final class SlowFileserver: Sendable {
    struct Counters: Sendable {
        var inFlight = 0
        var maxInFlight = 0
        var requests = 0
        var rejected = 0
    }

    let volume: FileserverVolume
    let delay: TimeAmount
    let limit: Int
    let group: any EventLoopGroup
    private let counters = Mutex(Counters())
    private let channel = Mutex<(any Channel)?>(nil)

    init(
        volume: FileserverVolume, delay: TimeAmount = .milliseconds(333), limit: Int = 15,
        group: any EventLoopGroup
    ) {
        self.volume = volume
        self.delay = delay
        self.limit = limit
        self.group = group
    }

    var statistics: Counters { counters.withLock { $0 } }

    /// Binds 127.0.0.1 on a free port and returns it.
    func start() async throws -> Int {
        let bound = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(SlowFileserverHandler(server: self))
                }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        channel.withLock { $0 = bound }
        return bound.localAddress!.port!
    }

    func stop() async {
        let bound = channel.withLock { $0 }
        try? await bound?.close()
    }

    /// A request arrived: counts it; returns whether it must be refused (more than ``limit`` in flight).
    func begin() -> Bool {
        counters.withLock { counters in
            counters.requests += 1
            counters.inFlight += 1
            counters.maxInFlight = max(counters.maxInFlight, counters.inFlight)
            if counters.inFlight > limit {
                counters.rejected += 1
                return true
            }
            return false
        }
    }

    func end() {
        counters.withLock { $0.inFlight -= 1 }
    }
}

/// One connection of a ``SlowFileserver``.
final class SlowFileserverHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let server: SlowFileserver
    private var head: HTTPRequestHead?
    private var body = ByteBuffer()
    private var refused = false
    private var counted = false
    private var active = true

    init(server: SlowFileserver) {
        self.server = server
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let received):
            head = received
            body.clear()
            refused = server.begin()
            counted = true
        case .body(var chunk):
            body.writeBuffer(&chunk)
        case .end:
            guard let head else { return }
            let keepAlive = head.isKeepAlive
            if refused {
                respond(context: context, status: .tooManyRequests, body: nil, keepAlive: keepAlive)
                return
            }
            let request = head
            let bytes = body.readableBytesView.map { $0 }
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            context.eventLoop.scheduleTask(in: server.delay) {
                let (handler, context) = bound.value
                let (status, answer) = handler.process(request, bytes)
                handler.respond(context: context, status: status, body: answer, keepAlive: keepAlive)
            }
        }
    }

    /// The answer to one request.
    private func process(_ head: HTTPRequestHead, _ bytes: [UInt8]) -> (HTTPResponseStatus, [UInt8]?) {
        let prefix = "/api/fileserver/"
        guard head.uri.hasPrefix(prefix) else { return (.notFound, nil) }
        let name = String(head.uri.dropFirst(prefix.count))
        switch head.method {
        case .PUT:
            server.volume.write(name, bytes)
            return (.created, nil)
        case .GET:
            guard let stored = server.volume.read(name) else { return (.notFound, nil) }
            return (.ok, stored)
        case .DELETE:
            guard server.volume.remove(name) else { return (.notFound, nil) }
            return (.ok, Array("{\"deleted\":\"\(name)\"}".utf8))
        default:
            return (.methodNotAllowed, nil)
        }
    }

    private func respond(
        context: ChannelHandlerContext, status: HTTPResponseStatus, body: [UInt8]?, keepAlive: Bool
    ) {
        if counted {
            counted = false
            server.end()
        }
        guard active else { return }
        var headers = HTTPHeaders()
        headers.add(name: "Content-Length", value: "\(body?.count ?? 0)")
        if status == .tooManyRequests { headers.add(name: "Retry-After", value: "1") }
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        let head = HTTPResponseHead(version: .http1_1, status: status, headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if let body, !body.isEmpty {
            context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: body)))), promise: nil)
        }
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            let channel = context.channel
            done.whenComplete { _ in channel.close(promise: nil) }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        active = false
        if counted {
            counted = false
            server.end()
        }
        context.fireChannelInactive()
    }
}

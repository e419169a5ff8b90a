import NIOCore
import NIOHTTP1
import NIOPosix

/// When the run's phases begin and end, shared by every connection.
struct RunTiming: Sendable {
    /// Warmup begins.
    let start: NIODeadline
    /// Measurement begins (warmup ends).
    let measureStart: NIODeadline
    let end: NIODeadline
    let stages: Int

    var stageLength: TimeAmount { .nanoseconds((end - measureStart).nanoseconds / Int64(stages)) }

    /// The measured stage a request intended at `time` belongs to; `nil` during warmup.
    func stage(at time: NIODeadline) -> Int? {
        guard time >= measureStart else { return nil }
        let length = max(1, stageLength.nanoseconds)
        return min(stages - 1, Int((time - measureStart).nanoseconds / length))
    }

    /// The stage whose load applies at `time` (the warmup runs the first stage's).
    func loadStage(at time: NIODeadline) -> Int { stage(at: time) ?? 0 }

    func stageStart(_ stage: Int) -> NIODeadline { measureStart + .nanoseconds(stageLength.nanoseconds * Int64(stage)) }
}

/// One keep-alive connection sending one request at a time over its own slice of the key space, checking every
/// answer against its ``IntegrityModel``. Confined to its event loop: every method runs there, hence the unchecked
/// `Sendable`.
final class BenchConnection: @unchecked Sendable {
    private struct Request {
        var operation: BenchOperation
        var key: Int
        var written: BodyPatternHandle?
        var intended: NIODeadline
        /// Prefill or final check: not part of the statistics (but checked).
        var unmeasured: Bool
        var status: Int?
        var matcher: BodyMatcherHandle?
        var bytesIn = 0
        var closeAfter = false
        /// How much of the body has been written (bodies over `partSize` go out in parts, as the socket takes them).
        var bodySent = 0
    }

    /// Bodies larger than this are sent in parts of this size, each when the connection is writable.
    static let partSize = 256 * 1024

    private enum Phase { case idle, sweep(BenchOperation), running, done }

    let index: Int
    let loop: any EventLoop
    private let configuration: BenchConfiguration
    private let shard: StatsShard
    private var model: IntegrityModel
    private let paths: [String]
    private var random: SplitMix64
    private var channel: (any Channel)?
    private var generation = 0
    private var phase = Phase.idle
    private var timing: RunTiming?
    private var nextIntended: NIODeadline?
    private var request: Request?
    private var sweepQueue: [Int] = []
    private var sweepDone: EventLoopPromise<Void>?
    private var finished: EventLoopPromise<Void>?

    /// Connection `index` of `configuration.concurrency`: it owns the keys `index`, `index + concurrency`, ...
    init(index: Int, loop: any EventLoop, configuration: BenchConfiguration, shard: StatsShard) {
        self.index = index
        self.loop = loop
        self.configuration = configuration
        self.shard = shard
        let keys = Array(stride(from: index, to: configuration.keys, by: configuration.concurrency))
        model = IntegrityModel(globalKeys: keys.map { UInt64($0) }, sizes: configuration.sizes)
        paths = keys.map { configuration.target.basePath + "/" + configuration.keyName($0) }
        random = SplitMix64(seed: configuration.seed ^ (UInt64(index) &* 0x9E37_79B9_7F4A_7C15))
    }

    /// Sends `operation` once to every key of the slice, one after the other, unmeasured: PUT before the run (the
    /// prefill), GET after it (the final check that every acknowledged write is still there).
    func sweep(_ operation: BenchOperation) -> EventLoopFuture<Void> {
        loop.preconditionInEventLoop()
        let promise = loop.makePromise(of: Void.self)
        sweepDone = promise
        sweepQueue = Array((0..<model.count).reversed())
        phase = .sweep(operation)
        scheduleNext()
        return promise.futureResult
    }

    /// Runs the warmup and the measured stages; succeeds when the connection has stopped.
    func run(_ timing: RunTiming) -> EventLoopFuture<Void> {
        loop.preconditionInEventLoop()
        let promise = loop.makePromise(of: Void.self)
        finished = promise
        self.timing = timing
        nextIntended = timing.start
        phase = .running
        loop.scheduleTask(deadline: timing.start) { self.scheduleNext() }
        return promise.futureResult
    }

    /// Closes the connection if a request is still unanswered (after the run's end plus the request timeout).
    func abort() {
        if request != nil { channel?.close(promise: nil) }
    }

    // MARK: Scheduling

    private func scheduleNext() {
        switch phase {
        case .idle, .done:
            return
        case .sweep(let operation):
            guard let key = sweepQueue.popLast() else {
                phase = .idle
                channel?.close(promise: nil)
                channel = nil
                sweepDone?.succeed(())
                return
            }
            start(operation, key: key, intended: .now(), unmeasured: true)
        case .running:
            guard let timing else { return }
            let now = NIODeadline.now()
            let intended: NIODeadline
            if let rate = configuration.stageRate(stage: timing.loadStage(at: nextIntended ?? now)) {
                intended = nextIntended ?? now
                let perConnection = rate / Double(configuration.concurrency)
                nextIntended = intended + .nanoseconds(Int64(1e9 / perConnection))
            } else {
                intended = now
                let stage = timing.loadStage(at: now)
                if index >= configuration.activeConnections(stage: stage) {
                    // Idle in this stage: wake at the first later stage that includes this connection.
                    guard
                        let next = (stage + 1..<timing.stages).first(where: {
                            index < configuration.activeConnections(stage: $0)
                        })
                    else { return finish() }
                    loop.scheduleTask(deadline: timing.stageStart(next)) { self.scheduleNext() }
                    return
                }
            }
            // An open loop that fell behind stops at the end too, rather than sending its backlog late.
            guard intended < timing.end, now < timing.end else { return finish() }
            if intended > now {
                loop.scheduleTask(deadline: intended) { self.startRandom(intended: intended) }
            } else {
                startRandom(intended: intended)
            }
        }
    }

    private func startRandom(intended: NIODeadline) {
        let operation = configuration.mix.pick(Int(random.next() % UInt64(configuration.mix.total)))
        start(operation, key: Int(random.next() % UInt64(model.count)), intended: intended, unmeasured: false)
    }

    private func start(_ operation: BenchOperation, key: Int, intended: NIODeadline, unmeasured: Bool) {
        let written = operation.writesBody ? model.newVersion(key) : nil
        request = Request(
            operation: operation, key: key, written: written, intended: intended, unmeasured: unmeasured)
        if let channel, channel.isActive {
            send(on: channel)
        } else {
            connect()
        }
    }

    private func finish() {
        phase = .done
        channel?.close(promise: nil)
        channel = nil
        finished?.succeed(())
    }

    // MARK: The connection

    private func connect() {
        generation += 1
        let generation = self.generation
        let target = configuration.target
        ClientBootstrap(group: loop)
            .connectTimeout(.seconds(5))
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(
                        BenchResponseHandler(connection: self, generation: generation))
                }
            }
            .connect(host: target.host, port: target.port)
            .hop(to: loop)
            .whenComplete { result in
                switch result {
                case .success(let channel):
                    guard channel.isActive else { return self.complete(status: nil) }
                    self.channel = channel
                    self.send(on: channel)
                case .failure:
                    self.shard.recordConnectFailure()
                    self.complete(status: nil, retryAfter: .milliseconds(100))
                }
            }
    }

    private func send(on channel: any Channel) {
        guard let request else { return }
        var head = HTTPRequestHead(version: .http1_1, method: Self.method(request.operation), uri: paths[request.key])
        head.headers.add(name: "Host", value: configuration.target.hostHeader)
        if let written = request.written {
            head.headers.add(name: "Content-Length", value: String(written.size))
        } else if request.operation != .get {
            head.headers.add(name: "Content-Length", value: "0")
        }
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        sendBody(on: channel)
    }

    /// Writes the rest of the body, or as much as the socket takes (the rest on `writable`), then the end.
    private func sendBody(on channel: any Channel) {
        guard var request else { return }
        let size = request.written?.size ?? 0
        if let written = request.written {
            while request.bodySent < size {
                let end = min(size, request.bodySent + Self.partSize)
                let part = written.pattern.makeBuffer(allocator: channel.allocator, range: request.bodySent..<end)
                channel.write(HTTPClientRequestPart.body(.byteBuffer(part)), promise: nil)
                request.bodySent = end
                if end < size && !channel.isWritable { break }
            }
            self.request = request
        }
        if request.bodySent == size {
            channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        } else {
            channel.flush()
        }
    }

    /// The connection can take more: continue a body sent in parts.
    func writable(generation: Int) {
        guard generation == self.generation, let channel, let request, let written = request.written,
            request.bodySent > 0, request.bodySent < written.size
        else { return }
        sendBody(on: channel)
    }

    private static func method(_ operation: BenchOperation) -> HTTPMethod {
        switch operation {
        case .get: .GET
        case .put: .PUT
        case .post: .POST
        case .delete: .DELETE
        }
    }

    // MARK: Answers

    func received(_ part: HTTPClientResponsePart, generation: Int) {
        guard generation == self.generation, request != nil else { return }
        switch part {
        case .head(let head):
            let status = Int(head.status.code)
            request!.status = status
            request!.closeAfter = !head.isKeepAlive
            if request!.operation == .get && (200..<300).contains(status) {
                request!.matcher = model.matcher(request!.key)
            }
        case .body(let buffer):
            request!.bytesIn += buffer.readableBytes
            request!.matcher?.feed(buffer)
        case .end:
            complete(status: request!.status)
        }
    }

    func closed(generation: Int) {
        guard generation == self.generation else { return }
        channel = nil
        // An answer cut short says nothing about the data.
        if request != nil { complete(status: nil) }
    }

    /// Ends the current request with `status` (`nil`: no complete answer), records it and moves on.
    private func complete(status: Int?, retryAfter: TimeAmount? = nil) {
        guard let request else { return }
        self.request = nil
        let verdict: IntegrityVerdict
        switch request.operation {
        case .get: verdict = model.read(request.key, status: status, body: request.matcher)
        case .put: verdict = model.write(request.key, request.written!, create: false, status: status)
        case .post: verdict = model.write(request.key, request.written!, create: true, status: status)
        case .delete: verdict = model.delete(request.key, status: status)
        }
        let now = NIODeadline.now()
        shard.record(
            Sample(
                operation: request.operation, stage: request.unmeasured ? nil : timing?.stage(at: request.intended),
                latencyMicros: UInt64(max(0, (now - request.intended).nanoseconds / 1000)), status: status,
                bytesIn: request.bytesIn, bytesOut: request.written?.size ?? 0, verdict: verdict))
        // A body still unsent (the server answered early) leaves the connection unusable.
        let bodyUnsent = request.bodySent < (request.written?.size ?? 0)
        if request.closeAfter || status == nil || bodyUnsent {
            channel?.close(promise: nil)
            channel = nil
        }
        if let retryAfter {
            loop.scheduleTask(in: retryAfter) { self.scheduleNext() }
        } else {
            scheduleNext()
        }
    }
}

/// Hands a connection's answers to its ``BenchConnection``; tagged with the connection attempt it belongs to.
private final class BenchResponseHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPClientResponsePart

    private let connection: BenchConnection
    private let generation: Int

    init(connection: BenchConnection, generation: Int) {
        self.connection = connection
        self.generation = generation
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        connection.received(unwrapInboundIn(data), generation: generation)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { connection.writable(generation: generation) }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        connection.closed(generation: generation)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

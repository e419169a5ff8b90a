import CofferCore
import Logging
import NIOCore
import NIOHTTP1

/// The per-connection handler: routes each request, streams upload bodies to the store with backpressure (it stops
/// reading the socket while the store catches up), and writes what the ``RequestProcessor`` answers.
///
/// Runs on the connection's event loop only; the processor's task talks to it through a ``Responder``. It also keeps
/// the connection's idle timeout and answers requests the parser rejects (see `BlobHTTPHandler+Connection.swift`), so
/// the pipeline holds no other handler that every response part would have to pass through.
final class BlobHTTPHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    typealias BodySequence = NIOThrowingAsyncSequenceProducer<
        ByteBuffer, any Error, NIOAsyncSequenceProducerBackPressureStrategies.HighLowWatermark, BodyDelegate
    >

    /// Bodies this small that a response leaves unread are drained to keep the connection; larger ones close it.
    static let maxDrainBytes: Int64 = 64 * 1024
    /// Bodies of announced length up to this (and no `Expect: 100-continue`) are read in full before the request
    /// starts, and handed over as one buffer.
    static let bufferedBodyLimit: Int64 = 64 * 1024
    /// Body bytes that count as progress against the idle timeout: an upload slower than this per idle timeout (1 KiB
    /// a minute by default) is cut off like an idle connection.
    static let minimumBodyProgress = 1024

    let processor: RequestProcessor
    private(set) var context: ChannelHandlerContext?
    private var dates = DateCache()

    // Connection.
    /// The last read, or write issued or completed; the idle check closes the connection `idleTimeout` after it.
    var lastActivity = NIODeadline.now()
    var idleCheck: Scheduled<Void>?
    /// Streamed writes issued and not yet completed: while there are some, the client is the one being waited for.
    var pendingWrites = 0
    /// A final (non-1xx) response head is written and its end is not: a parser error can no longer be answered.
    var responseHeadWritten = false

    // Per request.
    var source: BodySequence.Source?
    /// A write whose small body is being collected; it starts when the body ends.
    var collecting: (request: BlobRequest, responder: Responder, body: ByteBuffer)?
    var requestOpen = false
    var responseOpen = false
    private var keepAlive = true
    var expectsContinue = false
    var continueSent = false
    private var announcedLength: Int64?
    private var hasBody = false
    private var bytesReceived: Int64 = 0
    private var version = HTTPVersion.http1_1

    /// Body bytes received since the last progress (see ``noteProgress(_:)``).
    private var bodyBytesSinceProgress = 0

    // Read backpressure.
    var readsPaused = false
    private var readPending = false
    /// Request parts held back while the connection is not writable: a client that does not read its answers gets no
    /// further answers queued, and the socket is not read, until the last one has drained. At most one request's
    /// parts, since NIO's pipeline handler holds later pipelined requests until this one's response ends; so a
    /// connection holds about one answer (the write buffer's high watermark, or one small answer over it), however
    /// many requests its client pipelines.
    private var heldBack: [HTTPServerRequestPart] = []
    /// Held-back parts are being handled: parts arriving meanwhile queue behind them.
    private var replaying = false
    /// The answer is out and the write side shut: what the client still sends is read and dropped until it stops
    /// (``lingerTimeout`` without data), ``lingerLimit`` has passed, or it closes (nginx's lingering close).
    var lingering = false
    var lingerCheck: Scheduled<Void>?

    init(processor: RequestProcessor) {
        self.processor = processor
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { startIdleCheck(context: context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        stopIdleCheck()
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        startIdleCheck(context: context)
        context.fireChannelActive()
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if lingering {  // the rest of a body answered early: dropped
            lastActivity = .now()
            return
        }
        let part = unwrapInboundIn(data)
        noteProgress(part)
        if replaying || !heldBack.isEmpty {
            heldBack.append(part)
            return
        }
        if case .head = part, !context.channel.isWritable {
            heldBack.append(part)
            return
        }
        handle(part, context: context)
    }

    /// Heads and ends are progress; body bytes only once ``minimumBodyProgress`` of them arrived since the last
    /// progress, so an upload must send that much per idle timeout to keep its connection (one byte every two
    /// seconds no longer does).
    private func noteProgress(_ part: HTTPServerRequestPart) {
        if case .body(let buffer) = part {
            bodyBytesSinceProgress += buffer.readableBytes
            guard bodyBytesSinceProgress >= Self.minimumBodyProgress else { return }
        }
        bodyBytesSinceProgress = 0
        lastActivity = .now()
    }

    /// Once the client has read enough of the answers written so far, the held-back request goes on, in order (parts
    /// that arrive meanwhile queue behind it), until a next request finds the connection unwritable again.
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, !heldBack.isEmpty, !replaying {
            replaying = true
            while !heldBack.isEmpty {
                if case .head = heldBack[0], !context.channel.isWritable { break }
                handle(heldBack.removeFirst(), context: context)
            }
            replaying = false
            if heldBack.isEmpty, !readsPaused, readPending {
                readPending = false
                context.read()
            }
        }
        context.fireChannelWritabilityChanged()
    }

    private func handle(_ part: HTTPServerRequestPart, context: ChannelHandlerContext) {
        switch part {
        case .head(let head): receive(head, context: context)
        case .body(let buffer):
            bytesReceived += Int64(buffer.readableBytes)
            continueSent = true  // the client is sending already; an interim 100 would be pointless now
            if collecting != nil {
                collecting!.body.writeImmutableBuffer(buffer)
                return
            }
            guard let source else { return }  // a body nobody reads (early answer): dropped
            switch source.yield(buffer) {
            case .produceMore: break
            case .stopProducing: readsPaused = true
            case .dropped: self.source = nil
            }
        case .end:
            requestOpen = false
            source?.finish()
            source = nil
            if let (request, responder, body) = collecting {
                collecting = nil
                let processor = self.processor
                Task { await processor.process(request, body: .buffered(body), responder: responder) }
            }
            resumeReading()
        }
    }

    private func receive(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        requestOpen = true
        responseOpen = true
        keepAlive = head.isKeepAlive
        version = head.version
        expectsContinue = head.headers[canonicalForm: "expect"].contains { $0.lowercased() == "100-continue" }
        continueSent = false
        announcedLength = RequestHeaders.contentLength(head.headers)
        hasBody = RequestHeaders.hasBody(head.headers, contentLength: announcedLength)
        bytesReceived = 0
        let responder = Responder(loop: context.eventLoop, handler: NIOLoopBound(self, eventLoop: context.eventLoop))
        if head.uri == "/health" && (head.method == .GET || head.method == .HEAD) {
            let json = JSON.object([("status", "ok")])
            var headers = HTTPHeaders([("Content-Type", "application/json"), ("Content-Length", "\(json.utf8.count)")])
            headers.add(name: "Cache-Control", value: "no-store")
            sendResponse(status: .ok, headers: headers, body: head.method == .GET ? ByteBuffer(string: json) : nil)
            return
        }
        let request: BlobRequest
        switch Router.route(head, id: processor.nextRequestID(), contentLength: announcedLength) {
        case .success(let routed): request = routed
        case .failure(let error):
            sendError(error)
            return
        }
        if (head.method == .GET || head.method == .HEAD) && processor.answerNow(request, responder: responder) {
            return
        }
        var body = RequestBody.none
        if head.method == .PUT || head.method == .POST {
            if let length = announcedLength, length > processor.configuration.maxBlobSize {
                sendError(.payloadTooLarge(max: processor.configuration.maxBlobSize))
                return
            }
            if let length = announcedLength, length <= Self.bufferedBodyLimit, !expectsContinue {
                collecting = (request, responder, context.channel.allocator.buffer(capacity: Int(length)))
                return
            }
            let made = BodySequence.makeSequence(
                backPressureStrategy: .init(lowWatermark: 2, highWatermark: 8), finishOnDeinit: false,
                delegate: BodyDelegate(responder: responder))
            source = made.source
            body = .streamed(made.sequence)
        }
        let processor = self.processor
        Task { await processor.process(request, body: body, responder: responder) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        stopIdleCheck()
        lingerCheck?.cancel()
        lingerCheck = nil
        heldBack = []
        collecting = nil  // a body cut short: the write never starts
        source?.finish(ChannelError.inputClosed)
        source = nil
        responseOpen = false  // nothing can be sent any more
        context.fireChannelInactive()
    }

    // MARK: Outbound (read backpressure)

    func read(context: ChannelHandlerContext) {
        if readsPaused && !lingering || !heldBack.isEmpty {
            readPending = true
        } else {
            context.read()
        }
    }

    /// The store wants more body: send `100 Continue` if the client waits for it, and read again.
    func resumeReading() {
        guard let context else { return }
        if expectsContinue && !continueSent && requestOpen && source != nil {
            continueSent = true
            context.writeAndFlush(wrapOutboundOut(.head(HTTPResponseHead(version: version, status: .continue))))
                .whenFailure { _ in }
        }
        readsPaused = false
        if readPending, heldBack.isEmpty {
            readPending = false
            context.read()
        }
    }

    /// The store stopped consuming the body (it answered, or failed): unread parts are dropped from now on.
    func bodyConsumerTerminated() {
        source = nil
        if !responseOpen || requestOpen { resumeReading() }
    }

    // MARK: Responses (called on the event loop by the Responder)

    /// Whether the connection must close after this response.
    private func mustClose(_ forced: Bool) -> Bool {
        if forced || !keepAlive { return true }
        guard requestOpen && hasBody else { return false }
        // The request body is not fully read. The client of an unanswered Expect will not send it, and a long or
        // chunked one is not worth draining: either way the framing of the next request is unknown.
        if expectsContinue && !continueSent { return true }
        guard let length = announcedLength else { return true }
        return length - bytesReceived > Self.maxDrainBytes
    }

    private func decorate(_ headers: inout HTTPHeaders, close: Bool) {
        headers.add(name: "Date", value: dates.current())
        if close {
            headers.add(name: "Connection", value: "close")
        } else if version == .http1_0 {
            headers.add(name: "Connection", value: "keep-alive")
        }
    }

    func sendResponse(status: HTTPResponseStatus, headers: HTTPHeaders, body: ByteBuffer?, forceClose: Bool = false) {
        guard let context, responseOpen else { return }
        let close = mustClose(forceClose)
        var headers = headers
        decorate(&headers, close: close)
        // No promises: a failed write closes the channel, which the handler hears about; a future per write would
        // cost two allocations on the hottest path.
        responseHeadWritten = true
        lastActivity = .now()
        context.write(
            wrapOutboundOut(.head(HTTPResponseHead(version: version, status: status, headers: headers))), promise: nil)
        if let body, body.readableBytes > 0 {
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        }
        finishResponse(context: context, close: close)
    }

    func sendError(_ error: HTTPError, forHead: Bool = false) {
        guard let context else { return }
        let body = context.channel.allocator.buffer(string: error.jsonBody)
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Content-Length", value: "\(body.readableBytes)")
        for (name, value) in error.headers { headers.add(name: name, value: value) }
        sendResponse(
            status: error.status, headers: headers, body: forHead ? nil : body, forceClose: error.closeConnection)
    }

    /// Starts a streamed response; the body follows through ``writeChunk(_:)``.
    func sendHead(status: HTTPResponseStatus, headers: HTTPHeaders) -> EventLoopFuture<Void> {
        guard let context, responseOpen else { return failed() }
        var headers = headers
        decorate(&headers, close: mustClose(false))
        responseHeadWritten = true
        return noteCompletion(
            context.writeAndFlush(
                wrapOutboundOut(.head(HTTPResponseHead(version: version, status: status, headers: headers)))))
    }

    func writeChunk(_ buffer: ByteBuffer) -> EventLoopFuture<Void> {
        guard let context, responseOpen else { return failed() }
        return noteCompletion(context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(buffer)))))
    }

    func writeFileRegion(_ region: FileRegion) -> EventLoopFuture<Void> {
        guard let context, responseOpen else { return failed() }
        return noteCompletion(context.writeAndFlush(wrapOutboundOut(.body(.fileRegion(region)))))
    }

    func endStream() {
        guard let context, responseOpen else { return }
        finishResponse(context: context, close: mustClose(false))
    }

    /// A streamed response cannot be completed (stored bytes failed their checksum mid-way): close the connection
    /// so the client sees a short body, never a complete wrong one.
    func abortStream() {
        responseOpen = false
        context?.close(promise: nil)
    }

    private func finishResponse(context: ChannelHandlerContext, close: Bool) {
        responseOpen = false
        responseHeadWritten = false
        if close {
            let channel = context.channel
            // A body the client may still be sending: closing now would make the kernel answer its bytes with a
            // reset, which destroys the answer before the client reads it. Linger instead.
            let linger = requestOpen && hasBody && !(expectsContinue && !continueSent)
            let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { result in
                if linger, case .success = result {
                    handler.value.startLingering()
                } else {
                    channel.close(promise: nil)
                }
            }
            return
        }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        if requestOpen {
            // Drain the small unread rest of the body; the pipeline handler holds the next request until it ends.
            source?.finish()
            source = nil
            resumeReading()
        }
    }

    private func failed() -> EventLoopFuture<Void> {
        let loop = context?.eventLoop ?? processor.fallbackLoop
        return loop.makeFailedFuture(ChannelError.ioOnClosedChannel)
    }
}

/// Tells the handler, on its event loop, when the store wants more of the body or stopped reading it.
struct BodyDelegate: NIOAsyncSequenceProducerDelegate {
    let responder: Responder

    func produceMore() { responder.onLoop { $0.resumeReading() } }
    func didTerminate() { responder.onLoop { $0.bodyConsumerTerminated() } }
}

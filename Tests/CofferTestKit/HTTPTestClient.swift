import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// A complete response as a client saw it.
public struct TestResponse: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    public var body: [UInt8]

    public init(status: Int, headers: HTTPHeaders, body: [UInt8]) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// The first value of header `name` (case-insensitive).
    public func header(_ name: String) -> String? { headers.first(name: name) }

    public var text: String { String(decoding: body, as: UTF8.self) }

    /// The body as a flat JSON object of string values, or `nil` when it is not one.
    public var json: [String: String]? { FlatJSON.parse(text) }

    /// Whether this is a JSON error body `{"error": code, "message": ...}` with a JSON Content-Type.
    public func isJSONError(_ code: String? = nil) -> Bool {
        guard header("content-type") == "application/json", let json, let error = json["error"],
            json["message"] != nil
        else { return false }
        return code == nil || error == code
    }
}

/// Why a test connection gave up.
public enum TestClientError: Error, CustomStringConvertible {
    case timedOut(String)
    case closed(String)

    public var description: String {
        switch self {
        case .timedOut(let what): "timed out: \(what)"
        case .closed(let what): "connection closed: \(what)"
        }
    }
}

/// Forwards every inbound message into an `AsyncThrowingStream`, and ends it when the connection closes.
final class InboundCollector<Message: Sendable>: ChannelInboundHandler, Sendable {
    typealias InboundIn = Message
    let continuation: AsyncThrowingStream<Message, any Error>.Continuation

    init(_ continuation: AsyncThrowingStream<Message, any Error>.Continuation) {
        self.continuation = continuation
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        continuation.yield(unwrapInboundIn(data))
    }

    func channelInactive(context: ChannelHandlerContext) {
        continuation.finish()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A reset after the server answered and closed is how some error tests end: report it as the end.
        continuation.finish()
        context.close(promise: nil)
    }
}

/// Closes a channel when an operation takes too long, so a hung server fails the test instead of hanging it.
final class Watchdog: Sendable {
    private let channel: any Channel
    private let fired = Atomic<Bool>(false)

    init(_ channel: any Channel) { self.channel = channel }

    var hasFired: Bool { fired.load(ordering: .acquiring) }

    /// Closes the connection (which ends any read) unless the returned task is cancelled within `timeout`.
    func arm(_ timeout: TimeAmount) -> Scheduled<Void> {
        let channel = self.channel
        return channel.eventLoop.scheduleTask(in: timeout) { [self] in
            fired.store(true, ordering: .releasing)
            channel.close(promise: nil)
        }
    }
}

/// A keep-alive HTTP/1.1 client on NIO: one connection, reused for every request sent through it, one request at a
/// time. Bodies are sent with Content-Length, or chunked from parts.
public actor HTTPTestClient {
    public let channel: any Channel
    private var parts: AsyncThrowingStream<HTTPClientResponsePart, any Error>.AsyncIterator
    private let watchdog: Watchdog
    private let timeout: TimeAmount

    private init(
        channel: any Channel, parts: AsyncThrowingStream<HTTPClientResponsePart, any Error>, timeout: TimeAmount
    ) {
        self.channel = channel
        self.parts = parts.makeAsyncIterator()
        self.watchdog = Watchdog(channel)
        self.timeout = timeout
    }

    public static func connect(port: Int, timeout: TimeAmount = .seconds(20)) async throws -> HTTPTestClient {
        let (stream, continuation) = AsyncThrowingStream<HTTPClientResponsePart, any Error>.makeStream()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.seconds(5))
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(InboundCollector(continuation))
                }
            }
            .connect(host: "127.0.0.1", port: port)
            .get()
        return HTTPTestClient(channel: channel, parts: stream, timeout: timeout)
    }

    /// Sends one request and returns the complete response. `body` goes with a Content-Length (unless `headers`
    /// names one); `chunks` go with `Transfer-Encoding: chunked`, one chunk each.
    public func send(
        _ method: HTTPMethod, _ path: String, headers: [(String, String)] = [], body: [UInt8]? = nil,
        chunks: [[UInt8]]? = nil
    ) async throws -> TestResponse {
        var head = HTTPRequestHead(version: .http1_1, method: method, uri: path)
        head.headers.add(name: "Host", value: "127.0.0.1")
        for (name, value) in headers { head.headers.add(name: name, value: value) }
        if body == nil, chunks == nil, method != .GET, method != .HEAD {
            // Else NIO's encoder would announce a chunked body, which the server cannot drain after an early answer.
            head.headers.add(name: "Content-Length", value: "0")
        } else if let body, !head.headers.contains(name: "content-length") {
            head.headers.add(name: "Content-Length", value: "\(body.count)")
        } else if chunks != nil, !head.headers.contains(name: "transfer-encoding") {
            head.headers.add(name: "Transfer-Encoding", value: "chunked")
        }
        let headWritten = channel.write(HTTPClientRequestPart.head(head))
        if let body, !body.isEmpty {
            channel.write(HTTPClientRequestPart.body(.byteBuffer(ByteBuffer(bytes: body))), promise: nil)
        }
        for chunk in chunks ?? [] where !chunk.isEmpty {
            channel.write(HTTPClientRequestPart.body(.byteBuffer(ByteBuffer(bytes: chunk))), promise: nil)
        }
        // Not awaited: a server that answers early and closes fails the write, and the response is what counts.
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        do {
            return try await receive("\(method.rawValue) \(path)")
        } catch TestClientError.closed(let what) {
            // Say so when the request never left (the client refused to encode it).
            do {
                try await headWritten.get()
            } catch {
                throw TestClientError.closed("\(what) (sending the head failed: \(error))")
            }
            throw TestClientError.closed(what)
        }
    }

    /// Reads the next complete response.
    public func receive(_ what: String = "response") async throws -> TestResponse {
        let alarm = watchdog.arm(timeout)
        defer { alarm.cancel() }
        var iterator = parts
        defer { parts = iterator }
        var head: HTTPResponseHead?
        var body: [UInt8] = []
        while true {
            guard let part = try await iterator.next(isolation: self) else {
                if watchdog.hasFired { throw TestClientError.timedOut(what) }
                throw TestClientError.closed(what)
            }
            switch part {
            case .head(let received): head = received
            case .body(var buffer): body += buffer.readBytes(length: buffer.readableBytes) ?? []
            case .end:
                guard let head else { throw TestClientError.closed("end without head: \(what)") }
                return TestResponse(status: Int(head.status.code), headers: head.headers, body: body)
            }
        }
    }

    /// Waits until the server closes the connection; throws if it does not within the timeout.
    public func waitForClose() async throws {
        let alarm = watchdog.arm(timeout)
        defer { alarm.cancel() }
        var iterator = parts
        defer { parts = iterator }
        while try await iterator.next(isolation: self) != nil {}
        if watchdog.hasFired { throw TestClientError.timedOut("waiting for the server to close") }
    }

    /// Whether the connection is still open.
    public nonisolated var isActive: Bool { channel.isActive }

    public nonisolated func close() {
        channel.close(promise: nil)
    }
}

/// A parser for the flat JSON objects the server sends (`{"k":"v",...}`, string values only).
public enum FlatJSON {
    public static func parse(_ text: String) -> [String: String]? {
        var scalars = Array(text.unicodeScalars)[...]
        func skipSpace() { while let c = scalars.first, c == " " || c == "\n" || c == "\t" { scalars.removeFirst() } }
        func expect(_ c: Unicode.Scalar) -> Bool {
            skipSpace()
            guard scalars.first == c else { return false }
            scalars.removeFirst()
            return true
        }
        func string() -> String? {
            guard expect("\"") else { return nil }
            var out = String.UnicodeScalarView()
            while let c = scalars.popFirst() {
                switch c {
                case "\"": return String(out)
                case "\\":
                    guard let escaped = scalars.popFirst() else { return nil }
                    switch escaped {
                    case "n": out.append("\n")
                    case "t": out.append("\t")
                    case "r": out.append("\r")
                    case "u":
                        guard scalars.count >= 4,
                            let value = UInt32(String(String.UnicodeScalarView(scalars.prefix(4))), radix: 16),
                            let scalar = Unicode.Scalar(value)
                        else { return nil }
                        scalars.removeFirst(4)
                        out.append(scalar)
                    default: out.append(escaped)
                    }
                default: out.append(c)
                }
            }
            return nil
        }
        guard expect("{") else { return nil }
        var result: [String: String] = [:]
        if expect("}") { return result }
        repeat {
            guard let key = string(), expect(":"), let value = string() else { return nil }
            result[key] = value
        } while expect(",")
        guard expect("}") else { return nil }
        skipSpace()
        return scalars.isEmpty ? result : nil
    }
}

import NIOCore
import NIOHTTP1
import NIOPosix

/// A plain TCP connection to the server: the test writes arbitrary bytes (malformed requests, pipelined requests,
/// partial bodies) and reads back what the server sends, parsed into responses by a small independent parser.
public actor RawConnection {
    public let channel: any Channel
    private var chunks: AsyncThrowingStream<ByteBuffer, any Error>.AsyncIterator
    private var received: [UInt8] = []
    private var peerClosed = false
    private let watchdog: Watchdog
    private let timeout: TimeAmount

    private init(channel: any Channel, chunks: AsyncThrowingStream<ByteBuffer, any Error>, timeout: TimeAmount) {
        self.channel = channel
        self.chunks = chunks.makeAsyncIterator()
        self.watchdog = Watchdog(channel)
        self.timeout = timeout
    }

    public static func connect(port: Int, timeout: TimeAmount = .seconds(20)) async throws -> RawConnection {
        let (stream, continuation) = AsyncThrowingStream<ByteBuffer, any Error>.makeStream()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.seconds(5))
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(InboundCollector(continuation))
                }
            }
            .connect(host: "127.0.0.1", port: port)
            .get()
        return RawConnection(channel: channel, chunks: stream, timeout: timeout)
    }

    /// Writes `bytes` in one write (one packet for small writes, with TCP_NODELAY).
    public func send(_ bytes: [UInt8]) async throws {
        try await channel.writeAndFlush(ByteBuffer(bytes: bytes))
    }

    public func send(_ text: String) async throws {
        try await send(Array(text.utf8))
    }

    /// Writes `bytes`, returning `false` instead of throwing when the server already closed or reset.
    @discardableResult
    public func trySend(_ bytes: [UInt8]) async -> Bool {
        do {
            try await send(bytes)
            return true
        } catch {
            return false
        }
    }

    /// The next complete response (an interim `100 Continue` counts as one), or `nil` when the server closed the
    /// connection before one was complete. `headOnly` for responses to HEAD.
    public func readResponse(headOnly: Bool = false) async throws -> TestResponse? {
        let alarm = watchdog.arm(timeout)
        defer { alarm.cancel() }
        while true {
            if let (response, consumed) = RawResponseParser.parse(received[...], headOnly: headOnly, atEOF: peerClosed)
            {
                received.removeFirst(consumed)
                return response
            }
            if peerClosed { return nil }
            try await receiveMore("a response")
        }
    }

    /// Waits for at least one byte and returns what arrived (without parsing it).
    public func readSome() async throws -> [UInt8] {
        let alarm = watchdog.arm(timeout)
        defer { alarm.cancel() }
        while received.isEmpty && !peerClosed { try await receiveMore("some bytes") }
        defer { received = [] }
        return received
    }

    /// Reads until the server closes the connection; returns everything it sent that was not read yet.
    public func readUntilClose() async throws -> [UInt8] {
        let alarm = watchdog.arm(timeout)
        defer { alarm.cancel() }
        while !peerClosed { try await receiveMore("the server to close the connection") }
        defer { received = [] }
        return received
    }

    /// Reads responses until the server closes the connection.
    public func responsesUntilClose() async throws -> [TestResponse] {
        var rest = try await readUntilClose()[...]
        var responses: [TestResponse] = []
        while let (response, consumed) = RawResponseParser.parse(rest, headOnly: false, atEOF: true) {
            responses.append(response)
            rest = rest.dropFirst(consumed)
        }
        return responses
    }

    /// Whether the server has closed the connection (as far as this side has read).
    public var isClosedByPeer: Bool { peerClosed }

    private func receiveMore(_ what: String) async throws {
        var iterator = chunks
        defer { chunks = iterator }
        guard var chunk = try await iterator.next(isolation: self) else {
            if watchdog.hasFired { throw TestClientError.timedOut("waiting for \(what)") }
            peerClosed = true
            return
        }
        received += chunk.readBytes(length: chunk.readableBytes) ?? []
    }

    public nonisolated func close() {
        channel.close(promise: nil)
    }
}

/// Parses one HTTP/1.1 response off the front of a byte buffer, independently of NIO's parser.
public enum RawResponseParser {
    /// The first complete response in `bytes` and how many bytes it took, or `nil` when more bytes are needed.
    /// A response delimited by the end of the connection is only complete `atEOF`.
    public static func parse(_ bytes: ArraySlice<UInt8>, headOnly: Bool, atEOF: Bool) -> (TestResponse, Int)? {
        let crlfcrlf: [UInt8] = [13, 10, 13, 10]
        guard let headEnd = bytes.firstRange(of: crlfcrlf)?.upperBound else { return nil }
        let headText = String(decoding: bytes[bytes.startIndex..<headEnd], as: UTF8.self)
        var lines = headText.split(separator: "\r\n", omittingEmptySubsequences: true)
        guard !lines.isEmpty else { return nil }
        let statusLine = lines.removeFirst().split(separator: " ", maxSplits: 2)
        guard statusLine.count >= 2, statusLine[0].hasPrefix("HTTP/1."), let status = Int(statusLine[1]) else {
            return nil
        }
        var headers = HTTPHeaders()
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers.add(
                name: String(line[..<colon]),
                value: String(line[line.index(after: colon)...]).trimmingCharacters(in: " \t"))
        }
        let consumedHead = headEnd - bytes.startIndex
        if headOnly || (100..<200).contains(status) || status == 204 || status == 304 {
            return (TestResponse(status: status, headers: headers, body: []), consumedHead)
        }
        let rest = bytes[headEnd...]
        if headers.first(name: "transfer-encoding")?.lowercased().contains("chunked") == true {
            guard let (body, consumed) = parseChunked(rest) else { return nil }
            return (TestResponse(status: status, headers: headers, body: body), consumedHead + consumed)
        }
        if let length = headers.first(name: "content-length").flatMap({ Int($0) }) {
            guard rest.count >= length else { return nil }
            return (
                TestResponse(status: status, headers: headers, body: Array(rest.prefix(length))),
                consumedHead + length
            )
        }
        guard atEOF else { return nil }
        return (TestResponse(status: status, headers: headers, body: Array(rest)), bytes.count)
    }

    private static func parseChunked(_ bytes: ArraySlice<UInt8>) -> ([UInt8], Int)? {
        let crlf: [UInt8] = [13, 10]
        var body: [UInt8] = []
        var position = bytes.startIndex
        while true {
            guard let lineEnd = bytes[position...].firstRange(of: crlf) else { return nil }
            let sizeText = String(decoding: bytes[position..<lineEnd.lowerBound], as: UTF8.self)
            guard let size = Int(sizeText.split(separator: ";")[0], radix: 16) else { return nil }
            position = lineEnd.upperBound
            if size == 0 {
                guard let trailerEnd = bytes[position...].firstRange(of: crlf) else { return nil }
                // No trailers expected: the chunked body ends with an empty line.
                return (body, trailerEnd.upperBound - bytes.startIndex)
            }
            guard bytes.endIndex - position >= size + 2 else { return nil }
            body += bytes[position..<position + size]
            position += size + 2
        }
    }
}

extension StringProtocol {
    public func trimmingCharacters(in set: String) -> String {
        let trimmed = self.drop(while: { set.contains($0) }).reversed().drop(while: { set.contains($0) })
        return String(trimmed.reversed())
    }
}

/// Builds raw request bytes.
public enum RawRequest {
    /// A request head with `Host` and the given headers, ending with the empty line.
    public static func head(_ method: String, _ target: String, _ headers: [(String, String)] = []) -> [UInt8] {
        var text = "\(method) \(target) HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        for (name, value) in headers { text += "\(name): \(value)\r\n" }
        text += "\r\n"
        return Array(text.utf8)
    }

    /// A complete request with a Content-Length body.
    public static func with(
        _ method: String, _ target: String, _ headers: [(String, String)] = [], body: [UInt8]
    ) -> [UInt8] {
        head(method, target, headers + [("Content-Length", "\(body.count)")]) + body
    }

    /// One chunk of a chunked body.
    public static func chunk(_ bytes: [UInt8]) -> [UInt8] {
        Array(String(bytes.count, radix: 16).utf8) + [13, 10] + bytes + [13, 10]
    }

    /// The last chunk of a chunked body.
    public static let lastChunk: [UInt8] = Array("0\r\n\r\n".utf8)
}

import CofferTestKit
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension ProcessTests {
    /// The real `coffer gateway` binary over moto S3 servers (child processes on loopback).
    @Suite struct GatewayProcessTests {
        /// A 256 MiB body goes up (to two replicas at once) and comes back down through the gateway, streamed from
        /// and checked by the test as it goes (never held whole), byte-exact; the gateway's peak RSS stays far below
        /// the body's size.
        @Test(.timeLimit(.minutes(10))) func largeObjectAtConstantGatewayMemory() async throws {
            try await withGatewayRun { run in
                let motos = try await run.startMotos(2)
                let gateway = try await run.startGateway(over: motos, extraArguments: ["--replicas", "2"])
                let port = try #require(gateway.port)
                let client = try await HTTPTestClient.connect(port: port, timeout: .seconds(60))
                defer { client.close() }
                #expect(try await client.send(.PUT, "/store/warm/up", body: TestData.bytes(1000)).status == 201)
                let baseline = try #require(gateway.peakResidentBytes)

                let size: Int64 = 256 << 20
                let body = PatternBody(size: size, seed: 256)
                // The checker itself: a MiB of the body matches where it belongs and nowhere else.
                let second = body.block(1)
                #expect(second.withUnsafeReadableBytes { body.matches($0, at: 1 << 20) })
                #expect(!second.withUnsafeReadableBytes { body.matches($0, at: 0) })
                #expect(!second.withUnsafeReadableBytes { body.matches($0, at: 2 << 20) })
                let clock = ContinuousClock()
                let putStart = clock.now
                let put = try await StreamedTransfer.upload(port: port, path: "/store/large/blob", body: body)
                let putTime = clock.now - putStart
                #expect(put.status == 201, "PUT of 256 MiB: \(put.status) \(put.text)\n\(gateway.log)")
                let afterPut = gateway.peakResidentBytes ?? 0

                let getStart = clock.now
                let get = try await StreamedTransfer.download(port: port, path: "/store/large/blob", expecting: body)
                let getTime = clock.now - getStart
                #expect(get.status == 200, "GET of 256 MiB: \(get.status) \(get.text)")
                #expect(get.header("content-length") == "\(size)")
                #expect(get.count == size, "got \(get.count) of \(size) bytes")
                #expect(get.firstMismatch == nil, "the body differs from the MiB at offset \(get.firstMismatch ?? -1)")
                #expect(get.header("etag") != nil && get.header("etag") == put.header("etag"))

                let peak = try #require(gateway.peakResidentBytes)
                let mib = { (bytes: Int) in String(format: "%.1f MiB", Double(bytes) / 1_048_576) }
                print(
                    "gateway 256 MiB PUT (R=2) in \(putTime), GET in \(getTime): VmHWM \(mib(baseline)) before, "
                        + "\(mib(afterPut)) after the PUT, \(mib(peak)) after the GET; VmRSS now "
                        + mib(gateway.residentBytes ?? 0))
                #expect(peak < 96 << 20, "the gateway's peak RSS reached \(mib(peak)) for a 256 MiB body")
            }
        }

        /// `coffer gateway --shared-volume` in front of the challenge's file server (which answers GETs chunked, with
        /// no Content-Length): 1 GiB goes up and comes back byte-exact, the gateway's peak RSS under 64 MiB.
        @Test(.timeLimit(.minutes(10))) func gibibyteThroughFileserverAtConstantMemory() async throws {
            let servers = try await ChallengeFileservers.start(count: 2, latencyMilliseconds: 20)
            do {
                try await withGatewayRun { run in
                    let gateway = try run.launchGateway(
                        ["--listen", "127.0.0.1:0", "--shared-volume"]
                            + servers.backendURLs.flatMap { ["--backend", $0] })
                    try await gateway.waitUntilReady()
                    let port = try #require(gateway.port)
                    let size: Int64 = 1 << 30
                    let body = PatternBody(size: size, seed: 1024)
                    let clock = ContinuousClock()
                    let putStart = clock.now
                    let put = try await StreamedTransfer.upload(port: port, path: "/api/fileserver/big.bin", body: body)
                    let putTime = clock.now - putStart
                    #expect(put.status == 201, "PUT of 1 GiB: \(put.status) \(put.text)\n\(gateway.log)")
                    let afterPut = gateway.peakResidentBytes ?? 0
                    let mib = { (bytes: Int) in String(format: "%.1f MiB", Double(bytes) / 1_048_576) }
                    // The gateway that acknowledged the write holds the chunked body to the length it knows; a new
                    // gateway knows nothing, so it counts the body to its end, then asks for it again.
                    var reader = gateway
                    for round in ["known length", "restarted gateway"] {
                        if round == "restarted gateway" {
                            await gateway.stop()
                            reader = try run.launchGateway(
                                ["--listen", "127.0.0.1:0", "--shared-volume"]
                                    + servers.backendURLs.flatMap { ["--backend", $0] })
                            try await reader.waitUntilReady()
                        }
                        let getStart = clock.now
                        let get = try await StreamedTransfer.download(
                            port: try #require(reader.port), path: "/api/fileserver/big.bin", expecting: body)
                        let getTime = clock.now - getStart
                        #expect(get.status == 200, "GET (\(round)) of 1 GiB: \(get.status) \(get.text)")
                        #expect(get.header("content-length") == "\(size)")
                        #expect(get.count == size, "got \(get.count) of \(size) bytes")
                        #expect(get.firstMismatch == nil, "differs from the MiB at \(get.firstMismatch ?? -1)")
                        let peak = try #require(reader.peakResidentBytes)
                        print(
                            "gateway 1 GiB over the challenge's file server: PUT in \(putTime) (VmHWM"
                                + " \(mib(afterPut))); GET (\(round)) in \(getTime), VmHWM \(mib(peak))")
                        #expect(peak < 64 << 20, "the gateway's peak RSS reached \(mib(peak)) (\(round))")
                    }
                }
            } catch {
                await servers.stop()
                throw error
            }
            await servers.stop()
        }

        /// `--listen 127.0.0.1:0` binds a port of the OS's choosing, which the gateway logs (`listening
        /// address=...`); a round trip through it works; SIGTERM and SIGINT stop it promptly with status 0.
        @Test(.timeLimit(.minutes(3)), arguments: [SIGTERM, SIGINT])
        func ephemeralPortRoundTripAndSignal(signal: Int32) async throws {
            try await withGatewayRun { run in
                let motos = try await run.startMotos(1)
                let gateway = try await run.startGateway(over: motos)
                let port = try #require(gateway.port, "no listening line with a port in:\n\(gateway.log)")
                #expect(port != 0)
                #expect(gateway.log.contains("gateway started"), "\(gateway.log)")
                let client = try await HTTPTestClient.connect(port: port, timeout: .seconds(60))
                defer { client.close() }
                for (path, size) in [("/object/abc123", 0), ("/object/Big42", 3 << 20), ("/store/a/b%20c.txt", 777)] {
                    let data = TestData.bytes(size, seed: UInt64(size))
                    let put = try await client.send(.PUT, path, body: data)
                    #expect(put.status == 201, "PUT \(path): \(put.status) \(put.text)")
                    let got = try await client.send(.GET, path)
                    #expect(got.status == 200)
                    #expect(sameBytes(got.body, data), "GET \(path) is not byte-exact")
                    #expect(got.header("etag") == Digests.etag(data))
                    #expect(try await client.send(.HEAD, path).header("content-length") == "\(size)")
                }
                #expect(try await client.send(.DELETE, "/object/abc123").status == 204)
                #expect(try await client.send(.GET, "/object/abc123").status == 404)
                client.close()

                let start = ContinuousClock.now
                gateway.signal(signal)
                let exit = try await gateway.waitForExit(within: .seconds(20))
                let elapsed = ContinuousClock.now - start
                print("coffer gateway: signal \(signal) to exit in \(elapsed)")
                #expect(exit == .exited(0), "after signal \(signal): \(exit)\n\(gateway.log)")
                #expect(elapsed < .seconds(10), "signal \(signal) took \(elapsed) to stop the gateway")
                #expect(await !GracefulStopTests.acceptsConnections(port: port))
            }
        }

        /// Without a backend (or with a bad one) the gateway does not start: a usage error (exit status 64) that
        /// says what is missing, and no listening socket.
        @Test(.timeLimit(.minutes(2))) func usageErrors() async throws {
            try await withGatewayRun { run in
                let cases: [(arguments: [String], says: String)] = [
                    (["--listen", "127.0.0.1:0"], "give at least one --backend, or --docker"),
                    (["--listen", "127.0.0.1:0", "--backend", "ftp://127.0.0.1:1/x"], "--backend"),
                    (["--listen", "nowhere", "--backend", "s3://a:b@127.0.0.1:1/coffer"], "--listen"),
                    (
                        ["--listen", "127.0.0.1:0", "--backend", "s3://a:b@127.0.0.1:1/coffer", "--replicas", "0"],
                        "--replicas"
                    ),
                ]
                for (arguments, says) in cases {
                    let gateway = try run.launchGateway(arguments)
                    let exit = try await gateway.waitForExit(within: .seconds(20))
                    let log = gateway.log
                    #expect(exit == .exited(64), "coffer gateway \(arguments): \(exit)\n\(log)")
                    #expect(log.contains(says), "coffer gateway \(arguments) does not say \"\(says)\":\n\(log)")
                    #expect(log.contains("Usage: coffer gateway"), "\(log)")
                    #expect(!log.contains("listening"))
                }
            }
        }
    }
}

/// A deterministic body of any size, generated on the fly and checkable at any offset without being stored: a 1 MiB
/// pseudo-random block repeated, each repetition stamped with its index (first 8 bytes, little-endian) so that no two
/// MiB of the body are alike.
struct PatternBody: Sendable {
    static let blockSize = 1 << 20
    let size: Int64
    private let block: [UInt8]

    init(size: Int64, seed: UInt64) {
        self.size = size
        block = TestData.bytes(Self.blockSize, seed: seed)
    }

    var blockCount: Int { Int((size + Int64(Self.blockSize) - 1) / Int64(Self.blockSize)) }

    /// Block `index` of the body (the last one may be shorter).
    func block(_ index: Int) -> ByteBuffer {
        let length = Int(min(Int64(Self.blockSize), size - Int64(index) * Int64(Self.blockSize)))
        var bytes = Array(block[0..<length])
        for position in 0..<min(8, length) { bytes[position] = Self.stamp(index, position) }
        return ByteBuffer(bytes: bytes)
    }

    /// Whether `bytes` are exactly the body's bytes at `offset`.
    func matches(_ bytes: UnsafeRawBufferPointer, at offset: Int64) -> Bool {
        guard offset >= 0, offset + Int64(bytes.count) <= size else { return false }
        var position = 0
        while position < bytes.count {
            let absolute = offset + Int64(position)
            let index = Int(absolute / Int64(Self.blockSize))
            let within = Int(absolute % Int64(Self.blockSize))
            let length = min(bytes.count - position, Self.blockSize - within)
            var compared = 0
            while within + compared < 8, compared < length {
                if bytes[position + compared] != Self.stamp(index, within + compared) { return false }
                compared += 1
            }
            if compared < length {
                let equal = block.withUnsafeBytes { source in
                    memcmp(
                        bytes.baseAddress! + position + compared, source.baseAddress! + within + compared,
                        length - compared) == 0
                }
                if !equal { return false }
            }
            position += length
        }
        return true
    }

    private static func stamp(_ index: Int, _ position: Int) -> UInt8 {
        UInt8(truncatingIfNeeded: UInt64(index) >> (8 * UInt64(position)))
    }
}

/// HTTP/1.1 transfers of bodies too large to hold: an upload streamed from a ``PatternBody`` (one MiB written at a
/// time, the next only once the previous one reached the socket), and a download checked against one as it arrives.
enum StreamedTransfer {
    /// A response whose body was checked (or kept, when small) as it arrived.
    struct Response: Sendable {
        var status: Int
        var headers: HTTPHeaders
        /// The first MiB of the body when it was not checked against a pattern.
        var kept: [UInt8]
        var count: Int64
        /// The offset of the first received chunk that is not the pattern's bytes.
        var firstMismatch: Int64?

        func header(_ name: String) -> String? { headers.first(name: name) }
        var text: String { String(decoding: kept, as: UTF8.self) }
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// `PUT path` with `body` (Content-Length), streamed.
    static func upload(
        port: Int, path: String, body: PatternBody, timeout: TimeAmount = .seconds(480)
    ) async throws -> Response {
        try await exchange(port: port, timeout: timeout, expecting: nil) { channel in
            var head = HTTPRequestHead(version: .http1_1, method: .PUT, uri: path)
            head.headers.add(name: "Host", value: "127.0.0.1")
            head.headers.add(name: "Content-Length", value: "\(body.size)")
            head.headers.add(name: "Content-Type", value: "application/octet-stream")
            try await channel.writeAndFlush(HTTPClientRequestPart.head(head))
            for index in 0..<body.blockCount {
                // Awaiting each write is the back-pressure: a slow gateway slows the test down, not its memory up.
                try await channel.writeAndFlush(HTTPClientRequestPart.body(.byteBuffer(body.block(index))))
            }
            try await channel.writeAndFlush(HTTPClientRequestPart.end(nil))
        }
    }

    /// `GET path`, its body compared with `expected` as it arrives.
    static func download(
        port: Int, path: String, expecting expected: PatternBody, timeout: TimeAmount = .seconds(480)
    ) async throws -> Response {
        try await exchange(port: port, timeout: timeout, expecting: expected) { channel in
            var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: path)
            head.headers.add(name: "Host", value: "127.0.0.1")
            try await channel.writeAndFlush(HTTPClientRequestPart.head(head))
            try await channel.writeAndFlush(HTTPClientRequestPart.end(nil))
        }
    }

    private static func exchange(
        port: Int,
        timeout: TimeAmount,
        expecting expected: PatternBody?,
        send: (any Channel) async throws -> Void
    ) async throws -> Response {
        let done = MultiThreadedEventLoopGroup.singleton.any().makePromise(of: Response.self)
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.seconds(5))
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(CheckingResponseHandler(done, expected: expected))
                }
            }
            .connect(host: "127.0.0.1", port: port)
            .get()
        defer { channel.close(promise: nil) }
        let alarm = channel.eventLoop.scheduleTask(in: timeout) {
            done.fail(Failure(description: "no complete response within \(timeout)"))
            channel.close(promise: nil)
        }
        defer { alarm.cancel() }
        do {
            try await send(channel)
        } catch {
            // The gateway may answer early and close (an error status): the response tells why.
        }
        return try await done.futureResult.get()
    }
}

/// Collects a response on the event loop: the head, and the body either checked against a pattern (a download) or
/// kept up to 1 MiB (an error answer).
final class CheckingResponseHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart

    private let done: EventLoopPromise<StreamedTransfer.Response>
    private let expected: PatternBody?
    private var response = StreamedTransfer.Response(status: 0, headers: [:], kept: [], count: 0)
    private var finished = false

    init(_ done: EventLoopPromise<StreamedTransfer.Response>, expected: PatternBody?) {
        self.done = done
        self.expected = expected
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            response.status = Int(head.status.code)
            response.headers = head.headers
        case .body(let buffer):
            if let expected {
                if response.firstMismatch == nil,
                    !buffer.withUnsafeReadableBytes({ expected.matches($0, at: response.count) })
                {
                    response.firstMismatch = response.count
                }
            } else if response.kept.count < 1 << 20 {
                response.kept += buffer.readableBytesView.prefix((1 << 20) - response.kept.count)
            }
            response.count += Int64(buffer.readableBytes)
        case .end:
            guard !finished else { return }
            finished = true
            done.succeed(response)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !finished {
            finished = true
            done.fail(
                StreamedTransfer.Failure(
                    description: "the connection closed after \(response.count) body bytes (status \(response.status))"
                ))
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if !finished {
            finished = true
            done.fail(error)
        }
        context.close(promise: nil)
    }
}

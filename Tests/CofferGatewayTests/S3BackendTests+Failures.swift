import AsyncHTTPClient
import CofferCore
import Foundation
import NIOCore
import NIOPosix
import Testing

@testable import CofferGateway

// Signatures checked by a server, unreachable servers, awkward keys and broken upload bodies.
extension S3BackendTests {
    @Test("with authentication on, the right key works (moto checks every signature) and a wrong one is rejected")
    func authentication() async throws {
        try await MotoServer.withServer { moto in
            let (accessKey, secretKey) = try await moto.enableAuthentication()
            try await withBackend(moto, accessKey: accessKey, secretKey: secretKey) { backend in
                let bytes = S3TestData.bytes(200_000, seed: 11)
                // Only keys whose path needs no escaping: moto checks signatures against the decoded path, so it
                // rejects escaped keys even from boto3 (the unchecked awkwardKeys test covers those).
                for key in ["object/signed", "store/a/b-c_d.e~f"] {
                    _ = try await backend.put(key, body: .buffer(ByteBuffer(bytes: bytes)), contentType: "x/y")
                    #expect(try await backend.head(key).size == 200_000)
                    #expect(
                        try await S3TestData.collect(backend.get(key, range: 10..<20).body) == Array(bytes[10..<20]))
                }
                // A streamed body is signed as UNSIGNED-PAYLOAD.
                let streamed = BackendBody.stream(length: Int64(bytes.count), S3TestData.stream(bytes, chunkSize: 8192))
                _ = try await backend.put("object/streamed", body: streamed, contentType: nil)
                #expect(try await S3TestData.collect(backend.get("object/streamed", range: nil).body) == bytes)
                try await backend.delete("object/signed")
                await expectBackendError(.notFound) { _ = try await backend.head("object/signed") }
                try await backend.probe()
            }

            try await withBackend(moto, accessKey: accessKey, secretKey: secretKey + "x") { backend in
                let get = await expectBackendError(.rejected) {
                    _ = try await backend.get("object/streamed", range: nil)
                }
                #expect(get?.code == "SignatureDoesNotMatch")
                #expect(get?.status == 403)
                let put = await expectBackendError(.rejected) {
                    _ = try await backend.put("object/new", body: .buffer(ByteBuffer(string: "n")), contentType: nil)
                }
                #expect(put?.code == "SignatureDoesNotMatch")
                await expectBackendError(.rejected) { try await backend.probe() }
                await expectBackendError(.rejected) { _ = try await backend.head("object/streamed") }
            }

            try await withBackend(moto, accessKey: "AKIANOSUCHKEY0000000", secretKey: secretKey) { backend in
                let get = await expectBackendError(.rejected) {
                    _ = try await backend.get("object/streamed", range: nil)
                }
                #expect(get?.code == "InvalidAccessKeyId")
            }
        }
    }

    @Test("a killed server gives .unavailable within seconds, also to a download in progress")
    func killedServer() async throws {
        try await MotoServer.withServer { moto in
            try await withBackend(moto) { backend in
                let size = 32 << 20
                let bytes = S3TestData.bytes(1 << 20, seed: 1)
                let body = BackendBody.stream(length: Int64(size), S3TestData.repeating(bytes, times: 32))
                _ = try await backend.put("object/big", body: body, contentType: nil)
                _ = try await backend.put("object/small", body: .buffer(ByteBuffer(string: "s")), contentType: nil)

                // Start a download, read one chunk, then kill the server: the rest cannot all be buffered anywhere.
                let get = try await backend.get("object/big", range: nil)
                var iterator = get.body.makeAsyncIterator()
                #expect(try await iterator.next() != nil)
                await moto.kill()
                let broken = await expectBackendError(.unavailable, within: .seconds(30)) {
                    while try await iterator.next() != nil {}
                }
                #expect(broken != nil)

                let head = await expectBackendError(.unavailable, within: .seconds(15)) {
                    _ = try await backend.head("object/small")
                }
                print("after the kill: download \(broken?.code ?? "-"), head \(head?.code ?? "-")")
                await expectBackendError(.unavailable, within: .seconds(15)) {
                    _ = try await backend.get("object/small", range: nil)
                }
                await expectBackendError(.unavailable, within: .seconds(15)) {
                    _ = try await backend.put("object/p", body: .buffer(ByteBuffer(string: "p")), contentType: nil)
                }
                await expectBackendError(.unavailable, within: .seconds(15)) {
                    try await backend.delete("object/small")
                }
                await expectBackendError(.unavailable, within: .seconds(15)) { try await backend.probe() }
            }
        }
    }

    @Test("keys with spaces, unicode, slashes and reserved characters round-trip under their exact names")
    func awkwardKeys() async throws {
        // Pairs that would collide if slashes were collapsed or escapes decoded twice.
        let keys = [
            "object/with space", "store/ünïcødé/文件.txt", "store/a/b/c/d", "store/a//double", "store/a/double",
            "store/plus+amp&eq=semi;", "store/percent%20literal", "store/percent literal", "store/~tilde.dot-dash_u",
            "store/quote'!$()*,@:", "store/#hash?query", "store/trailing/",
        ]
        try await MotoServer.withServer { moto in
            try await withBackend(moto) { backend in
                for key in keys {
                    let bytes = Array(key.utf8) + S3TestData.bytes(1000, seed: 9)
                    _ = try await backend.put(key, body: .buffer(ByteBuffer(bytes: bytes)), contentType: nil)
                }
                // Each key is stored under its own name, not a decoded or re-encoded variant.
                #expect(try await moto.listKeys(bucket: "coffer").sorted() == keys.sorted())
                for key in keys {
                    let bytes = Array(key.utf8) + S3TestData.bytes(1000, seed: 9)
                    #expect(try await backend.head(key).size == Int64(bytes.count), "\(key)")
                    #expect(try await S3TestData.collect(backend.get(key, range: nil).body) == bytes, "\(key)")
                }
                for key in keys {
                    try await backend.delete(key)
                    await expectBackendError(.notFound) { _ = try await backend.head(key) }
                }
                #expect(try await moto.listKeys(bucket: "coffer").isEmpty)
            }
        }
    }

    @Test("a streamed upload body that fails or is short is blamed on the body, not the backend")
    func brokenUploadBodies() async throws {
        struct ClientWentAway: Error {}
        try await MotoServer.withServer { moto in
            try await withBackend(moto) { backend in
                let chunk = ByteBuffer(bytes: S3TestData.bytes(65_536, seed: 2))
                let failing = ByteStream {
                    let sent = ManagedCounter()
                    return {
                        guard sent.increment() <= 3 else { throw ClientWentAway() }
                        return chunk
                    }
                }
                await #expect(throws: ClientWentAway.self) {
                    _ = try await backend.put("object/f", body: .stream(length: 1 << 20, failing), contentType: nil)
                }
                let short = S3TestData.stream(S3TestData.bytes(1000, seed: 1), chunkSize: 100)
                await #expect(throws: StoreError.incompleteBody) {
                    _ = try await backend.put("object/s", body: .stream(length: 5000, short), contentType: nil)
                }
                await expectBackendError(.notFound) { _ = try await backend.head("object/f") }
                await expectBackendError(.notFound) { _ = try await backend.head("object/s") }
                // The backend is still fine.
                _ = try await backend.put("object/ok", body: .buffer(ByteBuffer(string: "ok")), contentType: nil)
                #expect(try await backend.head("object/ok").size == 2)
            }
        }
    }
}

extension S3BackendTests {
    @Test("a server that never answers hits the first-byte deadline; one that stalls mid-body, the read timeout")
    func stalledServers() async throws {
        let silent = try await StallingServer.start(response: nil)
        let fast = S3Backend.Timeouts(firstByte: .seconds(1), read: .seconds(60))
        try await withBackend(endpoint: silent.endpoint, timeouts: fast) { backend in
            let error = await expectBackendError(.unavailable, within: .seconds(20)) {
                _ = try await backend.head("object/x")
            }
            #expect(error?.code == "DeadlineExceeded")
        }
        try await silent.close()

        let partial = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nETag: \"e\"\r\n\r\nfirst bytes"
        let stalling = try await StallingServer.start(response: partial)
        let shortRead = S3Backend.Timeouts(firstByte: .seconds(60), read: .seconds(1))
        try await withBackend(endpoint: stalling.endpoint, timeouts: shortRead) { backend in
            let get = try await backend.get("object/x", range: nil)
            #expect(get.range == 0..<100)
            let error = await expectBackendError(.unavailable, within: .seconds(20)) {
                for try await _ in get.body {}
            }
            #expect(error?.code == "ReadTimeout")
        }
        try await stalling.close()
    }
}

/// A TCP server on 127.0.0.1 that answers every connection's first bytes with `response` (if any) and then says
/// nothing more, keeping the connection open.
struct StallingServer {
    let channel: any Channel

    static func start(response: String?) async throws -> StallingServer {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Handler(response: response))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return StallingServer(channel: channel)
    }

    var endpoint: S3Endpoint {
        S3Endpoint(host: "127.0.0.1", port: channel.localAddress!.port!, accessKey: "a", secretKey: "s")
    }

    func close() async throws { try await channel.close() }

    final class Handler: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        var response: String?

        init(response: String?) { self.response = response }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard let response else { return }
            self.response = nil
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: response)), promise: nil)
        }
    }
}

import AsyncHTTPClient
import CofferCore
import CofferTestKit
import Foundation
import NIOCore
import NIOPosix
import Testing

@testable import CofferGateway

/// ``HTTPBackend`` against real Coffer nodes (the engine behind the HTTP server, in process on port 0) and the slow
/// file server.
@Suite(.timeLimit(.minutes(3)))
struct HTTPBackendTests {
    /// Runs `body` with a fresh node and an HTTP client (both shut down afterwards).
    func withNode(_ body: (CofferTestNode, HTTPClient) async throws -> Void) async throws {
        let directory = try GatewayTestDirectory()
        defer { directory.remove() }
        let node = try await CofferTestNode.start(directory: directory)
        let client = HTTPClient(
            eventLoopGroup: .singletonMultiThreadedEventLoopGroup,
            configuration: HTTPBackend.clientConfiguration(maxConnectionsPerBackend: 10))
        do {
            try await body(node, client)
        } catch {
            await node.stop()
            try? await client.shutdown()
            throw error
        }
        await node.stop()
        try await client.shutdown()
    }

    func nodeBackend(_ node: CofferTestNode, _ client: HTTPClient, prefix: String = "/store") -> HTTPBackend {
        HTTPBackend(host: "127.0.0.1", port: node.port, prefix: prefix, client: client)
    }

    static func bytes(of stream: ByteStream) async throws -> [UInt8] {
        var out: [UInt8] = []
        for try await var chunk in stream { out += chunk.readBytes(length: chunk.readableBytes) ?? [] }
        return out
    }

    @Test("keys map to the server's route layout, one to one")
    func pathMapping() throws {
        let client = HTTPClient(eventLoopGroup: .singletonMultiThreadedEventLoopGroup)
        defer { client.shutdown { _ in } }
        func path(_ prefix: String, _ key: String) -> String {
            HTTPBackend(host: "h", port: 1, prefix: prefix, client: client).path(for: key)
        }
        #expect(path("/api/fileserver", "fileserver/report.pdf") == "/api/fileserver/report.pdf")
        #expect(path("/store", "store/a/b") == "/store/a/b")
        #expect(path("/store", "object/abc") == "/object/abc")
        #expect(path("", "fileserver/x") == "/api/fileserver/x")
        #expect(path("/data", "store/a") == "/data/store/a")
        #expect(path("/data/", "object/x") == "/data/object/x")
        #expect(path("/x/api/fileserver", "fileserver/n") == "/x/api/fileserver/n")
        #expect(path("/store", "store/a b/ü?#%") == "/store/a%20b/%C3%BC%3F%23%25")
        #expect(path("/store", "other") == "/other")
        #expect(
            HTTPBackend(host: "::1", port: 8080, prefix: "/api/fileserver/", client: client).id
                == "http://[::1]:8080/api/fileserver")
        let url = try BackendURL(parsing: "http://127.0.0.1:9/store")
        #expect(HTTPBackend(url: url, client: client)?.id == url.id)
    }

    @Test("put, head, get (whole and ranges) and delete on a Coffer node")
    func roundTrip() async throws {
        try await withNode { node, client in
            let backend = nodeBackend(node, client)
            let data = gatewayTestBytes(10_000, seed: 1)
            let put = try await backend.put("store/a/b c", body: .buffer(ByteBuffer(bytes: data)), contentType: "x/y")
            #expect(put.etag == Digests.hex(Digests.md5(data)))
            // The node stored it under the same key, in its own store namespace.
            #expect(try await node.bytes("store/a/b c") == data)

            let head = try await backend.head("store/a/b c")
            #expect(head.size == 10_000)
            #expect(head.etag == put.etag)
            #expect(head.contentType == "x/y")
            #expect(head.lastModifiedMillis != nil)

            let whole = try await backend.get("store/a/b c", range: nil)
            #expect(whole.range == 0..<10_000)
            #expect(try await Self.bytes(of: whole.body) == data)

            let part = try await backend.get("store/a/b c", range: 100..<200)
            #expect(part.range == 100..<200)
            #expect(part.object.size == 10_000)
            #expect(try await Self.bytes(of: part.body) == Array(data[100..<200]))

            let tail = try await backend.get("store/a/b c", range: 9_990..<Int64.max)
            #expect(tail.range == 9_990..<10_000)
            #expect(try await Self.bytes(of: tail.body) == Array(data[9_990...]))

            await #expect(throws: BackendError.self) {
                _ = try await backend.get("store/a/b c", range: 20_000..<20_001)
            }
            do {
                _ = try await backend.get("store/a/b c", range: 20_000..<20_001)
            } catch let error as BackendError {
                #expect(error.kind == .rangeNotSatisfiable)
            }

            try await backend.delete("store/a/b c")
            #expect(try await node.bytes("store/a/b c") == nil)
            for operation in ["head", "get", "delete"] {
                do {
                    switch operation {
                    case "head": _ = try await backend.head("store/a/b c")
                    case "get": _ = try await backend.get("store/a/b c", range: nil)
                    default: try await backend.delete("store/a/b c")
                    }
                    Issue.record("\(operation) of a deleted key succeeded")
                } catch let error as BackendError {
                    #expect(error.kind == .notFound, "\(operation): \(error)")
                    #expect(error.status == 404)
                }
            }
        }
    }

    @Test("the three key families stay separate namespaces on one node")
    func familiesStaySeparate() async throws {
        try await withNode { node, client in
            let store = nodeBackend(node, client, prefix: "/store")
            let files = nodeBackend(node, client, prefix: "/api/fileserver")
            try await _ = store.put("object/abc", body: .buffer(ByteBuffer(string: "o")), contentType: nil)
            try await _ = store.put("store/abc", body: .buffer(ByteBuffer(string: "s")), contentType: nil)
            try await _ = files.put("fileserver/abc", body: .buffer(ByteBuffer(string: "f")), contentType: nil)
            #expect(try await node.bytes("object/abc") == Array("o".utf8))
            #expect(try await node.bytes("store/abc") == Array("s".utf8))
            #expect(try await node.bytes("fileserver/abc") == Array("f".utf8))
        }
    }

    @Test("a large body streams both ways; a short stream stores nothing")
    func streaming() async throws {
        try await withNode { node, client in
            let backend = nodeBackend(node, client)
            let block = gatewayTestBytes(64 * 1024, seed: 7)
            let count = 128  // 8 MiB
            let stream = ByteStream {
                let sent = GatewayTicker()
                return { sent.next() <= count ? ByteBuffer(bytes: block) : nil }
            }
            let length = Int64(block.count * count)
            let put = try await backend.put("store/big", body: .stream(length: length, stream), contentType: nil)
            #expect(put.size == length)
            let got = try await backend.get("store/big", range: nil)
            var chunks = 0
            var total: Int64 = 0
            var same = true
            for try await chunk in got.body {
                chunks += 1
                let start = Int(total % Int64(block.count))
                let view = Array(chunk.readableBytesView)
                for (offset, byte) in view.enumerated() where byte != block[(start + offset) % block.count] {
                    same = false
                    break
                }
                total += Int64(chunk.readableBytes)
            }
            #expect(total == length)
            #expect(same)
            #expect(chunks > 1)

            // A stream that ends before its announced length: the request fails, the node keeps nothing.
            let short = ByteStream {
                let sent = GatewayTicker()
                return { sent.next() <= 3 ? ByteBuffer(bytes: block) : nil }
            }
            await #expect(throws: (any Error).self) {
                _ = try await backend.put("store/short", body: .stream(length: length, short), contentType: nil)
            }
            #expect(try await node.bytes("store/short") == nil)
        }
    }

    @Test("an unreachable server is .unavailable, fast; probe tells up from down")
    func unreachable() async throws {
        try await withNode { node, client in
            try await nodeBackend(node, client).probe()
        }
        // A bound port that never listens: refused for the whole test (a closed node's port could be reused).
        let (port, descriptor) = try LoopbackPort.refusing()
        defer { close(descriptor) }
        let client = HTTPClient(
            eventLoopGroup: .singletonMultiThreadedEventLoopGroup,
            configuration: HTTPBackend.clientConfiguration(maxConnectionsPerBackend: 2))
        defer { client.shutdown { _ in } }
        let backend = HTTPBackend(host: "127.0.0.1", port: port, prefix: "/store", client: client)
        let start = ContinuousClock.now
        for call in 0..<3 {
            do {
                switch call {
                case 0: _ = try await backend.head("store/a")
                case 1: _ = try await backend.put("store/a", body: .buffer(ByteBuffer(string: "x")), contentType: nil)
                default: try await backend.probe()
                }
                Issue.record("call \(call) to a closed port succeeded")
            } catch let error as BackendError {
                #expect(error.kind == .unavailable, "\(error)")
            }
        }
        #expect(ContinuousClock.now - start < .seconds(3))  // no connect retries: refused is refused
    }

    @Test("the challenge's file server: 429 is .throttled; HEAD refused, so GET; ranges cut from whole answers")
    func fileserverAnswers() async throws {
        let refusing = try await ChallengeFileservers.start(count: 1, latencyMilliseconds: 1, maxInFlight: 0)
        let servers = try await ChallengeFileservers.start(count: 1, latencyMilliseconds: 1)
        let client = HTTPClient(
            eventLoopGroup: .singletonMultiThreadedEventLoopGroup,
            configuration: HTTPBackend.clientConfiguration(maxConnectionsPerBackend: 4))
        defer { client.shutdown { _ in } }
        let throttled = HTTPBackend(
            host: "127.0.0.1", port: refusing.ports[0], prefix: "/api/fileserver", client: client)
        do {
            _ = try await throttled.get("fileserver/x", range: nil)
            Issue.record("expected 429")
        } catch let error as BackendError {
            #expect(error.kind == .throttled)
            #expect(error.status == 429)
            #expect(error.retryAfterSeconds == nil)  // the Go server sends none
        }
        let backend = HTTPBackend(host: "127.0.0.1", port: servers.ports[0], prefix: "/api/fileserver", client: client)
        _ = try await backend.put("fileserver/r.pdf", body: .buffer(ByteBuffer(string: "12345")), contentType: nil)
        #expect(FileManager.default.contents(atPath: servers.path(of: "r.pdf")) == Data("12345".utf8))
        let head = try await backend.head("fileserver/r.pdf")
        #expect(head.size == 5)
        #expect(head.etag == nil)
        let usesGet = backend.headUnsupported.load(ordering: .relaxed)
        #expect(usesGet)
        #expect(try await backend.head("fileserver/r.pdf").size == 5)
        // The server ignores ranges: the backend cuts the range out of the whole answer.
        let part = try await backend.get("fileserver/r.pdf", range: 1..<3)
        #expect(part.range == 1..<3)
        #expect(try await Self.bytes(of: part.body) == Array("23".utf8))
        try await backend.delete("fileserver/r.pdf")
        #expect(!FileManager.default.fileExists(atPath: servers.path(of: "r.pdf")))
        await refusing.stop()
        await servers.stop()
    }

    /// The file server sends files of 2 KiB and more chunked, with no Content-Length. A small one is read whole; one
    /// over 8 MiB is counted to its end and asked for again; with a known size, one request and the body is held to
    /// that length (a wrong length throws `.invalidResponse`, never counted against the backend).
    @Test("bodies without Content-Length of any size, held to the length the caller knows")
    func chunkedBodies() async throws {
        let servers = try await ChallengeFileservers.start(count: 1, latencyMilliseconds: 1)
        let client = HTTPClient(
            eventLoopGroup: .singletonMultiThreadedEventLoopGroup,
            configuration: HTTPBackend.clientConfiguration(maxConnectionsPerBackend: 4))
        defer { client.shutdown { _ in } }
        let backend = HTTPBackend(host: "127.0.0.1", port: servers.ports[0], prefix: "/api/fileserver", client: client)
        for size in [3000, 3 << 20, 12 << 20] {
            let bytes = gatewayTestBytes(size, seed: UInt64(size))
            _ = try await backend.put("fileserver/f\(size)", body: .buffer(ByteBuffer(bytes: bytes)), contentType: nil)
            let whole = try await backend.get("fileserver/f\(size)", range: nil)
            #expect(whole.object.size == Int64(size))
            #expect(try await Self.bytes(of: whole.body) == bytes)
            let known = try await backend.get("fileserver/f\(size)", range: nil, expectedSize: Int64(size))
            #expect(try await Self.bytes(of: known.body) == bytes)
            let tail = try await backend.get("fileserver/f\(size)", range: Int64(size - 100)..<Int64.max)
            #expect(try await Self.bytes(of: tail.body) == Array(bytes.suffix(100)))
            #expect(try await backend.head("fileserver/f\(size)").size == Int64(size))
            for wrong in [Int64(size - 1), Int64(size + 1)] {
                let got = try await backend.get("fileserver/f\(size)", range: nil, expectedSize: wrong)
                do {
                    _ = try await Self.bytes(of: got.body)
                    Issue.record("a body of \(size) bytes passed as \(wrong)")
                } catch let error as BackendError {
                    #expect(error.kind == .invalidResponse, "\(error)")
                    #expect(!error.isBackendFailure)
                }
            }
        }
        await servers.stop()
    }
}

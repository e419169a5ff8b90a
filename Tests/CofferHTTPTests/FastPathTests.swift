import CofferCore
import CofferEngine
import CofferHTTP
import CofferTestKit
import NIOCore
import NIOHTTP1
import Synchronization
import Testing

/// A store that forwards to the engine and counts the reads that took the regular (task, I/O thread) path.
final class CountingStore: BlobStore {
    let engine: LogEngine
    let slowReads = Atomic(0)

    init(_ engine: LogEngine) { self.engine = engine }

    func read(_ key: BlobKey, options: ReadOptions) async throws -> BlobRead {
        slowReads.add(1, ordering: .relaxed)
        return try await engine.read(key, options: options)
    }

    func write(
        _ key: BlobKey, body: some AsyncSequence<ByteBuffer, any Error> & Sendable, options: WriteOptions
    )
        async throws -> WriteResult
    {
        try await engine.write(key, body: body, options: options)
    }

    func delete(_ key: BlobKey, condition: WriteCondition) async throws -> BlobInfo {
        try await engine.delete(key, condition: condition)
    }

    func readNow(_ key: BlobKey, options: ReadOptions) -> Result<BlobRead, StoreError>? {
        engine.readNow(key, options: options)
    }
}

/// GET and HEAD of small blobs in memory, and every answer that needs no bytes, come straight from the event loop;
/// only reads that need the disk take the regular path. The answers are the same either way.
@Suite struct FastPathTests {
    @Test func smallReadsAreAnsweredOnTheEventLoop() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        var configuration = EngineConfiguration(directory: directory.path)
        configuration.inlineThreshold = 64 * 1024
        let engine = try await LogEngine.open(configuration, logger: TestNode.logger)
        let store = CountingStore(engine)
        let server = CofferHTTPServer(
            store: store, configuration: HTTPServerConfiguration(host: "127.0.0.1", port: 0), logger: TestNode.logger)
        let port = try await server.start().port!
        let client = try await HTTPTestClient.connect(port: port)
        defer { client.close() }

        let small = TestData.bytes(5000, seed: 1)
        let big = TestData.bytes(200 * 1024, seed: 2)
        #expect(try await client.send(.PUT, "/store/small", body: small).status == 201)
        #expect(try await client.send(.PUT, "/store/big", body: big).status == 201)
        for _ in 0..<5 {
            let got = try await client.send(.GET, "/store/small")
            #expect(got.status == 200 && got.body == small && got.header("etag") == Digests.etag(small))
        }
        let ranged = try await client.send(.GET, "/store/small", headers: [("Range", "bytes=100-199")])
        #expect(ranged.status == 206 && ranged.body == Array(small[100..<200]))
        #expect(try await client.send(.HEAD, "/store/big").header("content-length") == "\(big.count)")
        #expect(try await client.send(.GET, "/store/missing").status == 404)
        let etag = try #require(Digests.etag(big) as String?)
        #expect(try await client.send(.GET, "/store/big", headers: [("If-None-Match", etag)]).status == 304)
        #expect(store.slowReads.load(ordering: .relaxed) == 0)

        // The spilled blob's bytes need the disk: the regular path, same answer.
        let got = try await client.send(.GET, "/store/big")
        #expect(got.status == 200 && got.body == big)
        #expect(store.slowReads.load(ordering: .relaxed) == 1)

        await server.shutdown()
        try await engine.close()
    }
}

import CofferCore
import CofferTestKit
import NIOCore
import Testing

@testable import CofferGateway

/// The sharded store over ``FakeBackend``s: replicas that miss writes and deletes, bodies that fail their checks,
/// too few healthy backends, throttling, and the shared-volume placement.
@Suite(.timeLimit(.minutes(2)))
struct ShardedStoreFailureTests {
    /// Three fakes and a store over them whose breakers open at the first failure and stay open until a health check.
    static func make(
        replicas: Int = 2, count: Int = 3, configure: (inout ShardedStore.Configuration) -> Void = { _ in }
    ) -> ([FakeBackend], ShardedStore) {
        let fakes = (0..<count).map { FakeBackend(id: "fake://\($0)") }
        var configuration = ShardedStore.Configuration(
            replicas: replicas,
            gate: BackendGate.Configuration(
                throttleDeadline: .milliseconds(300), initialBackoff: .milliseconds(10), failureThreshold: 1,
                openCooldown: .seconds(60)))
        configure(&configuration)
        return (
            fakes,
            ShardedStore(
                backends: fakes.map { $0 as any Backend }, configuration: configuration, logger: gatewayTestLogger)
        )
    }

    /// `fakes` in `key`'s ranking order.
    static func ranked(_ fakes: [FakeBackend], _ key: String) -> [FakeBackend] {
        Rendezvous(ids: fakes.map(\.id)).rank(key: key).map { fakes[$0] }
    }

    /// `bytes` in chunks; the end comes 100 ms after the last chunk, so that replicas have consumed every chunk sent
    /// to them before the store can know the body is complete (and check it).
    static func body(_ bytes: [UInt8], chunk: Int = 4096) -> ByteStream {
        let chunks = stride(from: 0, to: bytes.count, by: chunk).map {
            ByteBuffer(bytes: bytes[$0..<min($0 + chunk, bytes.count)])
        }
        return ByteStream {
            let ticker = GatewayTicker()
            return {
                let index = ticker.next() - 1
                if index == chunks.count { try await Task.sleep(for: .milliseconds(100)) }
                return index < chunks.count ? chunks[index] : nil
            }
        }
    }

    @discardableResult
    static func put(
        _ store: ShardedStore, _ key: String, _ bytes: [UInt8], length: Int? = nil, md5: [UInt8]? = nil
    ) async throws -> WriteResult {
        try await store.write(
            BlobKey(key)!, body: body(bytes),
            options: WriteOptions(expectedLength: Int64(length ?? bytes.count), expectedMD5: md5))
    }

    static func get(_ store: ShardedStore, _ key: String) async throws -> [UInt8] {
        let read = try await store.read(BlobKey(key)!, options: ReadOptions())
        switch read.body {
        case .buffer(let buffer): return Array(buffer.readableBytesView)
        case .stream(let stream):
            var out: [UInt8] = []
            for try await chunk in stream { out += Array(chunk.readableBytesView) }
            return out
        case nil: return []
        }
    }

    /// Makes `fake`'s gate notice it is down (one failed call opens its breaker).
    static func trip(_ fake: FakeBackend, in store: ShardedStore) async {
        fake.set { $0.failure = .unavailable }
        let gate = store.gates.first { $0.id == fake.id }!
        _ = try? await gate.head("anything")
        #expect(!gate.isHealthy)
    }

    static func revive(_ fake: FakeBackend, in store: ShardedStore) async {
        fake.set { $0.failure = nil }
        #expect(await store.gates.first { $0.id == fake.id }!.checkHealth())
    }

    @Test("a replica that missed a write is never read before it is repaired")
    func missedWrite() async throws {
        let (fakes, store) = Self.make()
        let key = "object/k"
        let order = Self.ranked(fakes, key)
        try await Self.put(store, key, Array("v1".utf8))
        #expect(order[0].bytes(key) == Array("v1".utf8) && order[1].bytes(key) == Array("v1".utf8))

        await Self.trip(order[0], in: store)
        try await Self.put(store, key, Array("v2".utf8))
        #expect(order[2].bytes(key) == Array("v2".utf8), "the write went to the next healthy backend")
        #expect(order[0].bytes(key) == Array("v1".utf8))

        await Self.revive(order[0], in: store)
        #expect(try await Self.get(store, key) == Array("v2".utf8), "the outdated replica was not trusted")
        #expect(
            await gatewayEventually { order[0].bytes(key) == Array("v2".utf8) && store.stale.marked(key).isEmpty },
            "and it was repaired")
        #expect(try await Self.get(store, key) == Array("v2".utf8))
    }

    @Test("a delete that missed a replica does not bring the key back")
    func missedDelete() async throws {
        let (fakes, store) = Self.make()
        let key = "store/gone"
        let order = Self.ranked(fakes, key)
        try await Self.put(store, key, Array("x".utf8))
        await Self.trip(order[0], in: store)
        _ = try await store.delete(BlobKey(key)!, condition: .none)
        await Self.revive(order[0], in: store)
        await #expect(throws: StoreError.notFound) { _ = try await Self.get(store, key) }
        #expect(
            await gatewayEventually { order[0].bytes(key) == nil && store.stale.marked(key).isEmpty },
            "the outdated copy was deleted")
    }

    @Test("a streamed body that fails its checks leaves nothing on any replica")
    func streamedChecks() async throws {
        let (fakes, store) = Self.make { $0.bufferLimit = 1024 }
        let data = gatewayTestBytes(100_000, seed: 3)
        await #expect(throws: StoreError.digestMismatch) {
            try await Self.put(store, "object/bad", data, md5: Digests.md5([1]))
        }
        await #expect(throws: StoreError.incompleteBody) {
            try await Self.put(store, "object/short", data, length: 200_000)
        }
        for fake in fakes { #expect(fake.keys.isEmpty) }

        let result = try await Self.put(store, "object/good", data, md5: Digests.md5(data))
        #expect(result.info.etag == Digests.hex(Digests.md5(data)))
        #expect(fakes.filter { $0.bytes("object/good") == data }.count == 2)
        #expect(try await Self.get(store, "object/good") == data)
        // The same checks on a buffered body.
        await #expect(throws: StoreError.digestMismatch) {
            try await Self.put(store, "object/small", [1, 2, 3], md5: Digests.md5([1]))
        }
        #expect(fakes.allSatisfy { $0.bytes("object/small") == nil })
    }

    @Test("fewer healthy backends than R: writes fail with 503 and nothing is written")
    func tooFewHealthy() async throws {
        let (fakes, store) = Self.make(replicas: 2, count: 2)
        await Self.trip(fakes[0], in: store)
        await #expect(throws: StoreError.unavailable) { try await Self.put(store, "object/x", [1]) }
        #expect(fakes[1].keys.isEmpty)
        // Reads still work from the healthy one (the key's other copy), and 404 stays 404.
        fakes[1].store("object/y", [9])
        #expect(try await Self.get(store, "object/y") == [9])
        await #expect(throws: StoreError.notFound) { _ = try await Self.get(store, "object/z") }
    }

    @Test("R=1, the key's backend down: reads answer 503, not 404")
    func unknownIsNotNotFound() async throws {
        let (fakes, store) = Self.make(replicas: 1)
        let key = "object/owned"
        let order = Self.ranked(fakes, key)
        try await Self.put(store, key, [1])
        await Self.trip(order[0], in: store)
        await #expect(throws: StoreError.unavailable) { _ = try await Self.get(store, key) }
        await #expect(throws: StoreError.unavailable) { _ = try await Self.get(store, "object/never") }
    }

    @Test("a backend throttling past the deadline gives busy")
    func throttledIsBusy() async throws {
        let (fakes, store) = Self.make(replicas: 1, count: 1)
        fakes[0].store("object/t", [1])
        fakes[0].set { $0.throttleNext = .max }
        await #expect(throws: StoreError.busy) { _ = try await Self.get(store, "object/t") }
        await #expect(throws: StoreError.busy) { try await Self.put(store, "object/t", [2]) }
    }

    @Test("shared volume: each request goes to the least busy backend, a 404 costs one request")
    func sharedPlacement() async throws {
        let (fakes, store) = Self.make(replicas: 3) {
            $0.placement = .shared
            $0.gate.maxConcurrentRequests = 4
        }
        for fake in fakes { fake.set { $0.delay = .milliseconds(100) } }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<24 {
                group.addTask { try await Self.put(store, "object/s\(index)", [UInt8(index)]) }
            }
            try await group.waitForAll()
        }
        let counts = fakes.map(\.keys.count)
        #expect(counts.reduce(0, +) == 24, "one copy each: \(counts)")
        #expect(counts.allSatisfy { $0 >= 6 }, "spread by load: \(counts)")
        #expect(fakes.allSatisfy { $0.maxInFlight <= 4 })
        let calls = fakes.map(\.calls).reduce(0, +)
        await #expect(throws: StoreError.notFound) { _ = try await Self.get(store, "object/none") }
        #expect(fakes.map(\.calls).reduce(0, +) == calls + 1, "a 404 costs one request")
        let total = { fakes.map(\.calls).reduce(0, +) }
        _ = try await store.delete(BlobKey("object/s1")!, condition: .none)
        #expect(total() == calls + 1 + 3, "the first delete of a name in this gateway's life reaches every backend")
        #expect(fakes.allSatisfy { $0.bytes("object/s1") == nil })
        await #expect(throws: StoreError.notFound) {
            _ = try await store.delete(BlobKey("object/s1")!, condition: .none)
        }
        await #expect(throws: StoreError.notFound) { _ = try await Self.get(store, "object/s1") }
        #expect(total() == calls + 4, "a name the gateway deleted is 404 without a request")
        try await Self.put(store, "object/s1", [9])
        _ = try await store.delete(BlobKey("object/s1")!, condition: .none)
        #expect(total() == calls + 6, "a later delete goes only to the backend that learned the name: one request")
    }

    /// Keys are byte strings to the gateway as to S3: canonically equivalent spellings are separate objects, in the
    /// cache, in what a shared-volume gateway knows, and on the backends.
    @Test("keys compare by bytes: equivalent Unicode spellings are separate objects", arguments: [false, true])
    func byteKeys(shared: Bool) async throws {
        let (_, store) = Self.make(replicas: 1) {
            $0.cacheSize = 1 << 20
            if shared { $0.placement = .shared }
        }
        let composed = "object/caf\u{E9}"
        let decomposed = "object/cafe\u{301}"
        #expect(composed == decomposed)  // what Swift's String says
        _ = try await Self.put(store, composed, [1])
        await #expect(throws: StoreError.notFound) { _ = try await Self.get(store, decomposed) }
        let second = try await Self.put(store, decomposed, [2])
        #expect(second.created)
        #expect(try await Self.get(store, composed) == [1])
        #expect(try await Self.get(store, decomposed) == [2])
        _ = try await store.delete(BlobKey(decomposed)!, condition: .none)
        #expect(try await Self.get(store, composed) == [1])
    }
}

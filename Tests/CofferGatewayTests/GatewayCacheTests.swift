import CofferCore
import NIOCore
import Testing

@testable import CofferGateway

/// The read cache: LRU by bytes, served by `readNow`, invalidated by this gateway's writes and deletes, and never
/// filled with a version a concurrent write replaced.
@Suite(.timeLimit(.minutes(1)))
struct GatewayCacheTests {
    static func info(_ size: Int, etag: String = "e") -> BlobInfo {
        BlobInfo(size: Int64(size), etag: etag, lastModifiedMillis: 0, contentType: "x/y")
    }

    @Test("least recently used entries go first once the byte budget is spent; large objects are never kept")
    func lruByBytes() {
        let entry = 1000 + 1 + GatewayCache.entryOverhead
        let cache = GatewayCache(capacity: 3 * entry, maxObjectSize: 1000)
        for name in ["a", "b", "c"] {
            cache.insert(name, info: Self.info(1000), bytes: ByteBuffer(repeating: 1, count: 1000)) { true }
        }
        #expect(cache.lookup("a") != nil)  // a is now the most recent; b the least
        cache.insert("d", info: Self.info(1000), bytes: ByteBuffer(repeating: 2, count: 1000)) { true }
        #expect(cache.lookup("b") == nil)
        #expect(cache.lookup("a") != nil && cache.lookup("c") != nil && cache.lookup("d") != nil)
        #expect(cache.statistics.bytes <= 3 * entry)
        #expect(cache.statistics.evictions == 1)
        cache.insert("big", info: Self.info(1001), bytes: ByteBuffer(repeating: 3, count: 1001)) { true }
        #expect(cache.lookup("big") == nil)
        cache.insert("stale", info: Self.info(10), bytes: ByteBuffer(repeating: 3, count: 10)) { false }
        #expect(cache.lookup("stale") == nil)
        cache.invalidate("a")
        #expect(cache.lookup("a") == nil)
    }

    static func store(_ backend: FakeBackend) -> ShardedStore {
        ShardedStore(
            backends: [backend], configuration: ShardedStore.Configuration(cacheSize: 1 << 20),
            logger: gatewayTestLogger)
    }

    static func write(_ store: ShardedStore, _ key: String, _ bytes: [UInt8]) async throws {
        let buffer = ByteBuffer(bytes: bytes)
        _ = try await store.write(
            BlobKey(key)!,
            body: ByteStream {
                let once = OnceFlag(); return { once.take() ? buffer : nil }
            },
            options: WriteOptions(expectedLength: Int64(bytes.count)))
    }

    static func cached(_ store: ShardedStore, _ key: String) -> [UInt8]? {
        guard case .success(let read)? = store.readNow(BlobKey(key)!, options: ReadOptions()),
            case .buffer(let buffer)? = read.body
        else { return nil }
        return Array(buffer.readableBytesView)
    }

    @Test("readNow answers from the cache without touching the backend; writes and deletes invalidate")
    func servesAndInvalidates() async throws {
        let backend = FakeBackend(id: "fake://cache")
        let store = Self.store(backend)
        try await Self.write(store, "object/k", [1, 2, 3])
        #expect(Self.cached(store, "object/k") == [1, 2, 3], "a write fills the cache")
        let calls = backend.calls
        for _ in 0..<10 { #expect(Self.cached(store, "object/k") == [1, 2, 3]) }
        let ranged = store.readNow(BlobKey("object/k")!, options: ReadOptions(range: .from(first: 1, last: 1)))
        guard case .success(let read)? = ranged, case .buffer(let slice)? = read.body else {
            Issue.record("no ranged answer from the cache")
            return
        }
        #expect(Array(slice.readableBytesView) == [2])
        #expect(backend.calls == calls)

        backend.store("object/k", [9])  // behind the gateway's back: not seen (documented)
        #expect(Self.cached(store, "object/k") == [1, 2, 3])
        try await Self.write(store, "object/k", [4])
        #expect(Self.cached(store, "object/k") == [4])
        _ = try await store.delete(BlobKey("object/k")!, condition: .none)
        #expect(store.readNow(BlobKey("object/k")!, options: ReadOptions()) == nil)

        // A read from the backend fills it.
        backend.store("object/r", [7, 7])
        #expect(Self.cached(store, "object/r") == nil)
        _ = try await store.read(BlobKey("object/r")!, options: ReadOptions())
        #expect(Self.cached(store, "object/r") == [7, 7])
    }

    @Test("a read that overlapped a write does not cache the version it read")
    func overlappingReadDoesNotCache() async throws {
        let backend = FakeBackend(id: "fake://race")
        let store = Self.store(backend)
        backend.store("object/k", Array("old".utf8))
        backend.set { $0.pauseAfterGet = .milliseconds(300) }
        // The read takes its snapshot ("old") at once and answers 300 ms later ...
        let reader = Task { try await store.read(BlobKey("object/k")!, options: ReadOptions()) }
        try await Task.sleep(for: .milliseconds(50))
        // ... while a write of "new" completes.
        backend.set { $0.pauseAfterGet = .zero }
        try await Self.write(store, "object/k", Array("new".utf8))
        _ = try await reader.value
        #expect(Self.cached(store, "object/k") != Array("old".utf8), "the overlapping read cached an old version")
        guard case .buffer(let buffer)? = try await store.read(BlobKey("object/k")!, options: ReadOptions()).body
        else {
            Issue.record("no buffered body")
            return
        }
        #expect(Array(buffer.readableBytesView) == Array("new".utf8))
    }
}

import AsyncHTTPClient
import CofferBench
import CofferCore
import CofferHTTP
import Foundation
import NIOCore
import NIOPosix
import Synchronization
import Testing

@testable import CofferGateway

/// The fileserver challenge, driven by `coffer bench` (``BenchRunner``, in process): five slow file servers sharing
/// one volume (~333 ms a request, 429 past 15 in flight) behind the gateway with a cap of 10 per backend, loaded
/// well above their capacity (5 × 10 / 0.333 s ≈ 150 requests/s) with a PUT/GET/DELETE mix whose every answer the
/// bench checks against what it wrote. Clients must see no 5xx, no 429, no wrong or lost data, and the backends
/// never more than 10 requests each (so they never refuse one).
@Suite(.serialized, .timeLimit(.minutes(4)))
struct FileserverModeTests {
    /// The backends' capacity: 5 backends × 10 connections / 0.333 s.
    static let idealThroughput = 5.0 * 10 / 0.333

    /// The least throughput accepted (CI is noisy). Shared placement sends one backend request per client request
    /// and reaches ~150 req/s on a quiet machine. Hashed placement (the default, not meant for a shared volume)
    /// costs more backend requests per client request: a DELETE looks the key up and then asks every backend, a GET
    /// of a deleted key asks every backend before its 404; it reaches ~80 req/s.
    static func minimumThroughput(_ placement: ShardedStore.Placement) -> Double {
        placement == .shared ? 60 : 30
    }

    /// The store as `coffer gateway` builds it, with or without `--shared-volume`, and the default cap of 10.
    static func configuration(_ placement: ShardedStore.Placement) -> ShardedStore.Configuration {
        var gate = BackendGate.Configuration()
        gate.maxConcurrentRequests = 10
        return ShardedStore.Configuration(placement: placement, gate: gate)
    }

    /// 120 connections (3.6 × the ~33 requests the backends can hold at once), closed loop, 8 s measured after a
    /// 1 s warmup; every key PUT once first (prefill) and read back once at the end (final check).
    static func benchConfiguration(port: Int) throws -> BenchConfiguration {
        var configuration = BenchConfiguration(
            target: BenchTarget(host: "127.0.0.1", port: port, basePath: "/api/fileserver"),
            mix: try OperationMix(parsing: "get=50,put=35,delete=15"))
        configuration.concurrency = 120
        configuration.keys = 240
        configuration.sizes = SizeRange(256, 4096)
        configuration.duration = .seconds(8)
        configuration.warmup = .seconds(1)
        configuration.eventLoops = 1
        configuration.requestTimeout = .seconds(60)
        return configuration
    }

    @Test(
        "five slow file servers behind the gateway, coffer bench above capacity: no 5xx, no 429, no bad data",
        arguments: [ShardedStore.Placement.shared, .hashed])
    func benchAboveCapacity(placement: ShardedStore.Placement) async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let volume = FileserverVolume()
        let servers = (0..<5).map { _ in SlowFileserver(volume: volume, group: group) }
        let client = HTTPClient(
            eventLoopGroup: .singletonMultiThreadedEventLoopGroup,
            configuration: HTTPBackend.clientConfiguration(maxConnectionsPerBackend: 10))
        var gateway: CofferHTTPServer?
        var health: Task<Void, Never>?
        func stopAll() async {
            health?.cancel()
            await gateway?.shutdown()
            for server in servers { await server.stop() }
            try? await client.shutdown()
            try? await group.shutdownGracefully()
        }

        let report: BenchReport
        let store: ShardedStore
        let counted: ErrorCountingStore
        do {
            var ports: [Int] = []
            for server in servers { ports.append(try await server.start()) }
            let backends: [any Backend] = ports.map {
                HTTPBackend(
                    host: "127.0.0.1", port: $0, prefix: "/api/fileserver", client: client, logger: gatewayTestLogger)
            }
            store = ShardedStore(
                backends: backends, configuration: Self.configuration(placement), logger: gatewayTestLogger)
            counted = ErrorCountingStore(store)
            let server = CofferHTTPServer(
                store: counted, configuration: HTTPServerConfiguration(host: "127.0.0.1", port: 0),
                logger: gatewayTestLogger)
            gateway = server
            let port = try #require(try await server.start().port)
            health = Task { _ = try? await store.run() }
            report = try await BenchRunner.run(try Self.benchConfiguration(port: port))
        } catch {
            await stopAll()
            throw error
        }
        await stopAll()

        let total = report.total
        let operations = Dictionary(uniqueKeysWithValues: total.operations.map { ($0.operation, $0) })
        let backendMax = servers.map(\.statistics.maxInFlight)
        let refused = servers.map(\.statistics.rejected).reduce(0, +)
        let backendRequests = servers.map(\.statistics.requests)
        let gates = store.gates.map(\.metrics)
        let storeErrors = counted.errors
        print(
            "fileserver mode (\(placement)) via coffer bench: \(total.requests) requests in"
                + " \(String(format: "%.1f", total.seconds)) s = \(String(format: "%.1f", total.requestsPerSecond))"
                + " req/s (best second \(total.bestSecond); ideal 5x10/0.333 = \(Int(Self.idealThroughput)))"
                + " with \(report.concurrency) connections; 2xx=\(total.status.success)"
                + " 4xx=\(total.status.clientError) 5xx=\(total.status.serverError) errors=\(total.status.errors)"
                + " invalid=\(report.invalid) lost=\(report.lost); p50 \(total.latencyMs.p50) ms,"
                + " p99 \(total.latencyMs.p99) ms; unmeasured \(report.unmeasuredRequests)"
                + " (\(report.unmeasuredErrors) errors); store errors \(storeErrors.sorted { $0.key < $1.key });"
                + " backend max in flight \(backendMax), backend 429s \(refused), backend requests \(backendRequests),"
                + " gateway throttled \(gates.map(\.throttled).reduce(0, +)) busy \(gates.map(\.busy).reduce(0, +))")

        // Every answer right, none lost, none failed.
        #expect(report.invalid == 0)
        #expect(report.lost == 0)
        #expect(report.exitCode == 0)
        #expect(total.status.serverError == 0)
        #expect(total.status.errors == 0)
        #expect(report.unmeasuredErrors == 0)
        // No 429 (the HTTP layer answers a busy store 503, counted above) and no 4xx but the 404s of deleted keys:
        // every error the store raised was `not_found`, the PUTs never got a 4xx, and each 4xx a GET or DELETE got
        // matches a `not_found` the store raised (the store also answered the unmeasured prefill and final check).
        #expect(storeErrors.keys.allSatisfy { $0 == StoreError.notFound.identifier }, "\(storeErrors)")
        #expect(operations[.put].map { $0.status.success == $0.requests } == true)
        #expect(total.status.clientError <= storeErrors[StoreError.notFound.identifier, default: 0])
        #expect(total.status.success + total.status.clientError == total.requests)
        #expect(operations[.get].map { $0.status.success > 0 } == true)
        #expect(operations[.delete].map { $0.status.success > 0 } == true)
        // The cap held: no backend ever saw more than 10 requests, so none refused one, and the gateway saw no 429.
        #expect(backendMax.allSatisfy { $0 <= 10 }, "\(backendMax)")
        #expect(backendMax.contains(10), "the load must saturate the cap: \(backendMax)")
        #expect(refused == 0)
        #expect(gates.allSatisfy { $0.throttled == 0 && $0.busy == 0 && $0.maxInFlight <= 10 })
        // Every backend served (shared: the least busy one; hashed: each key's owner).
        #expect(backendRequests.allSatisfy { $0 > 0 }, "\(backendRequests)")
        // Throughput: only a loose bound here (see `minimumThroughput`).
        #expect(
            total.requestsPerSecond >= Self.minimumThroughput(placement), "throughput \(total.requestsPerSecond) req/s")
    }
}

/// Serves a store and counts the errors it raises, by ``StoreError/identifier`` (other errors as their type).
private final class ErrorCountingStore: BlobStore {
    let inner: ShardedStore
    private let counts = Mutex<[String: Int]>([:])

    init(_ inner: ShardedStore) {
        self.inner = inner
    }

    /// Errors raised so far, by identifier.
    var errors: [String: Int] { counts.withLock { $0 } }

    private func counting<T>(_ operation: () async throws -> T) async throws -> T {
        do {
            return try await operation()
        } catch {
            note(error)
            throw error
        }
    }

    private func note(_ error: any Error) {
        let name = (error as? StoreError)?.identifier ?? "\(type(of: error))"
        counts.withLock { $0[name, default: 0] += 1 }
    }

    func read(_ key: BlobKey, options: ReadOptions) async throws -> BlobRead {
        try await counting { try await inner.read(key, options: options) }
    }

    func write(
        _ key: BlobKey, body: some AsyncSequence<ByteBuffer, any Error> & Sendable, options: WriteOptions
    ) async throws -> WriteResult {
        try await counting { try await inner.write(key, body: body, options: options) }
    }

    func delete(_ key: BlobKey, condition: WriteCondition) async throws -> BlobInfo {
        try await counting { try await inner.delete(key, condition: condition) }
    }

    func readNow(_ key: BlobKey, options: ReadOptions) -> Result<BlobRead, StoreError>? {
        let result = inner.readNow(key, options: options)
        if case .failure(let error) = result { note(error) }
        return result
    }
}

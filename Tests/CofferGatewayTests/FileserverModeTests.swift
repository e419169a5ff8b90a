import AsyncHTTPClient
import CofferBench
import CofferCore
import CofferHTTP
import Foundation
import NIOCore
import Testing

@testable import CofferGateway

/// The fileserver challenge, driven by `coffer bench` (``BenchRunner``, in process): five of the challenge's file
/// servers sharing one volume (``ChallengeFileservers``: ~333 ms a request, 429 past 15 in flight, per-process name
/// caches, truncate-then-write) behind the gateway with a cap of 10 per backend, loaded well above their capacity
/// (5 × 10 / 0.333 s ≈ 150 requests/s) with a PUT/GET/DELETE mix whose every answer the bench checks against what it
/// wrote. Clients must see no 5xx, no 429, no wrong or lost data, and the backends never more than 10 requests each
/// (so they never refuse one).
@Suite(.serialized, .timeLimit(.minutes(6)))
struct FileserverModeTests {
    /// The least throughput accepted (CI is noisy). Shared placement answers repeated reads from its cache and needs
    /// the backends only for writes, deletes and misses. Hashed placement (the default, not meant for a shared
    /// volume) costs more backend requests per client request: a DELETE looks the key up and then asks every
    /// backend, a GET of a deleted key asks every backend before its 404; it reaches ~80 req/s.
    static func minimumThroughput(_ placement: ShardedStore.Placement) -> Double {
        placement == .shared ? 100 : 30
    }

    /// The store as `coffer gateway` builds it, with or without `--shared-volume`, and the default cap of 10.
    static func configuration(_ placement: ShardedStore.Placement) -> ShardedStore.Configuration {
        if placement == .shared { return FileserverGateway.configuration(cache: true) }
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
        "five of the challenge's file servers behind the gateway, coffer bench above capacity: no 5xx, no 429, no bad data",
        arguments: [ShardedStore.Placement.shared, .hashed])
    func benchAboveCapacity(placement: ShardedStore.Placement) async throws {
        try await withFileserverGateway(configuration: Self.configuration(placement)) { gateway in
            let report = try await BenchRunner.run(try Self.benchConfiguration(port: gateway.port))
            let total = report.total
            let operations = Dictionary(uniqueKeysWithValues: total.operations.map { ($0.operation, $0) })
            let gates = gateway.store.gates.map(\.metrics)
            print(
                "fileserver mode (\(placement)) via coffer bench: \(total.requests) requests in"
                    + " \(String(format: "%.1f", total.seconds)) s = \(String(format: "%.1f", total.requestsPerSecond))"
                    + " req/s (best second \(total.bestSecond); backends' ceiling 5x10/0.333 = 150)"
                    + " with \(report.concurrency) connections; 2xx=\(total.status.success)"
                    + " 4xx=\(total.status.clientError) 5xx=\(total.status.serverError) errors=\(total.status.errors)"
                    + " invalid=\(report.invalid) lost=\(report.lost); p50 \(total.latencyMs.p50) ms,"
                    + " p99 \(total.latencyMs.p99) ms; unmeasured \(report.unmeasuredRequests)"
                    + " (\(report.unmeasuredErrors) errors); backend requests \(gates.map(\.requests)),"
                    + " max in flight \(gates.map(\.maxInFlight)), throttled \(gates.map(\.throttled).reduce(0, +))")

            // Every answer right, none lost, none failed.
            #expect(report.invalid == 0)
            #expect(report.lost == 0)
            #expect(report.exitCode == 0)
            #expect(total.status.serverError == 0)
            #expect(total.status.errors == 0)
            #expect(report.unmeasuredErrors == 0)
            // The only 4xx are the 404s of deleted keys (GET, DELETE); PUTs always succeed.
            #expect(operations[.put].map { $0.status.success == $0.requests } == true)
            #expect(total.status.success + total.status.clientError == total.requests)
            #expect(operations[.get].map { $0.status.success > 0 } == true)
            #expect(operations[.delete].map { $0.status.success > 0 } == true)
            // The cap held: no backend ever had more than 10 requests from the gateway, so none refused one.
            #expect(gates.allSatisfy { $0.throttled == 0 && $0.busy == 0 && $0.maxInFlight <= 10 }, "\(gates)")
            #expect(gates.contains { $0.maxInFlight == 10 }, "the load must saturate the cap")
            #expect(gates.allSatisfy { $0.requests > 0 }, "every backend serves")
            #expect(
                total.requestsPerSecond >= Self.minimumThroughput(placement),
                "throughput \(total.requestsPerSecond) req/s")
        }
    }
}

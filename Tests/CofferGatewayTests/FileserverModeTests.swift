import AsyncHTTPClient
import CofferCore
import CofferHTTP
import CofferTestKit
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Testing

@testable import CofferGateway

/// The fileserver challenge: five slow file servers sharing one volume (~333 ms a request, 429 past 15 in flight)
/// behind the gateway with a cap of 10 per backend, driven above their capacity. Clients must see no 5xx, no 429 and
/// no wrong data, and the backends never more than 10 requests each.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct FileserverModeTests {
    struct Tally: Sendable {
        var requests = 0
        var serverErrors = 0
        var tooMany = 0
        var invalid = 0
        var failures = 0
        var statuses: [Int: Int] = [:]

        mutating func add(_ other: Tally) {
            requests += other.requests
            serverErrors += other.serverErrors
            tooMany += other.tooMany
            invalid += other.invalid
            failures += other.failures
            for (status, count) in other.statuses { statuses[status, default: 0] += count }
        }
    }

    /// One client: its own connection and its own names, a PUT/GET/DELETE mix, every answer checked against what
    /// it knows it stored.
    static func client(_ id: Int, port: Int, until end: ContinuousClock.Instant) async -> Tally {
        var tally = Tally()
        guard let connection = try? await HTTPTestClient.connect(port: port, timeout: .seconds(60)) else {
            tally.failures += 1
            return tally
        }
        defer { connection.close() }
        var model: [String: [UInt8]] = [:]
        var generator = SystemRandomNumberGenerator()
        var sequence: UInt64 = 0
        while ContinuousClock.now < end {
            let name = "c\(id)-f\(Int.random(in: 0..<4, using: &generator)).bin"
            let path = "/api/fileserver/" + name
            let roll = Int.random(in: 0..<100, using: &generator)
            do {
                let status: Int
                if roll < 35 {
                    sequence += 1
                    let data = gatewayTestBytes(
                        Int.random(in: 256...4096, using: &generator), seed: UInt64(id) << 32 | sequence)
                    let response = try await connection.send(.PUT, path, body: data)
                    status = response.status
                    if (200..<300).contains(status) { model[name] = data }
                } else if roll < 85 {
                    let response = try await connection.send(.GET, path)
                    status = response.status
                    let expected = model[name]
                    let valid =
                        (status == 200 && expected == response.body) || (status == 404 && expected == nil)
                        || status >= 500 || status == 429
                    if !valid { tally.invalid += 1 }
                } else {
                    let response = try await connection.send(.DELETE, path)
                    status = response.status
                    let valid =
                        (status == 200 && model[name] != nil) || (status == 404 && model[name] == nil)
                        || status >= 500 || status == 429
                    if !valid { tally.invalid += 1 }
                    if status == 200 || status == 404 { model[name] = nil }
                }
                tally.requests += 1
                tally.statuses[status, default: 0] += 1
                if status >= 500 { tally.serverErrors += 1 }
                if status == 429 { tally.tooMany += 1 }
            } catch {
                tally.failures += 1
                return tally
            }
        }
        return tally
    }

    @Test(
        "five slow file servers behind the gateway: above capacity, no 5xx, no 429, no wrong data",
        arguments: [ShardedStore.Placement.shared, .hashed])
    func overload(placement: ShardedStore.Placement) async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let volume = FileserverVolume()
        let servers = (0..<5).map { _ in SlowFileserver(volume: volume, group: group) }
        var ports: [Int] = []
        for server in servers { ports.append(try await server.start()) }
        let client = HTTPClient(
            eventLoopGroup: .singletonMultiThreadedEventLoopGroup,
            configuration: HTTPBackend.clientConfiguration(maxConnectionsPerBackend: 10))
        let backends: [any Backend] = ports.map {
            HTTPBackend(host: "127.0.0.1", port: $0, prefix: "/api/fileserver", client: client)
        }
        // With a shared volume every backend sees every file: one replica, no fallback (a hashed store reads the
        // key's owner only, so a 404 costs one request there too).
        let store = ShardedStore(
            backends: backends,
            configuration: ShardedStore.Configuration(
                replicas: 1, placement: placement, fallbackDepth: 1,
                gate: BackendGate.Configuration(maxConcurrentRequests: 10)),
            logger: gatewayTestLogger)
        let server = CofferHTTPServer(
            store: store, configuration: HTTPServerConfiguration(host: "127.0.0.1", port: 0),
            logger: gatewayTestLogger)
        let port = try await server.start().port!
        let health = Task { _ = try? await store.run() }

        let clients = 120
        let duration = Duration.seconds(6)
        let start = ContinuousClock.now
        let end = start + duration
        let tally = await withTaskGroup(of: Tally.self) { tasks in
            for id in 0..<clients { tasks.addTask { await Self.client(id, port: port, until: end) } }
            var total = Tally()
            for await one in tasks { total.add(one) }
            return total
        }
        let elapsed = ContinuousClock.now - start
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let throughput = Double(tally.requests) / seconds

        health.cancel()
        await server.shutdown()
        for server in servers { await server.stop() }
        try await client.shutdown()
        try await group.shutdownGracefully()

        let backendMax = servers.map(\.statistics.maxInFlight)
        let refused = servers.map(\.statistics.rejected).reduce(0, +)
        let gates = store.gates.map(\.metrics)
        print(
            "fileserver mode (\(placement)): \(tally.requests) requests in \(String(format: "%.1f", seconds)) s ="
                + " \(String(format: "%.1f", throughput)) req/s with \(clients) clients (ideal 5x10/0.333 = 150);"
                + " 5xx=\(tally.serverErrors) 429=\(tally.tooMany) invalid=\(tally.invalid)"
                + " failures=\(tally.failures) statuses=\(tally.statuses.sorted { $0.key < $1.key });"
                + " backend max in flight \(backendMax), backend 429s \(refused),"
                + " per-backend requests \(gates.map(\.requests))")
        #expect(tally.serverErrors == 0)
        #expect(tally.tooMany == 0)
        #expect(tally.invalid == 0)
        #expect(tally.failures == 0)
        #expect(backendMax.allSatisfy { $0 <= 10 }, "\(backendMax)")
        #expect(refused == 0)
        #expect(throughput >= 60, "throughput \(throughput) req/s")
        #expect(tally.requests > 0)
    }
}

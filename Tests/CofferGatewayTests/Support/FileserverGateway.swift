import AsyncHTTPClient
import CofferCore
import CofferHTTP
import CofferTestKit
import NIOCore
import NIOHTTP1
import Synchronization

@testable import CofferGateway

/// A shared-volume gateway (the store `coffer gateway --shared-volume` builds, served by the HTTP layer on port 0)
/// in front of the challenge's file servers (``ChallengeFileservers``, real processes sharing one directory).
/// ``restartGateway()`` replaces the gateway by a fresh one that knows nothing, over the same servers.
final class FileserverGateway: Sendable {
    let servers: ChallengeFileservers
    let client: HTTPClient
    private let current = Mutex<(store: ShardedStore, server: CofferHTTPServer, port: Int)?>(nil)
    let configuration: ShardedStore.Configuration

    /// The configuration of `coffer gateway --shared-volume --max-conns-per-backend 10` (cache on), or with the
    /// cache off, so that every read reaches a backend.
    static func configuration(cache: Bool) -> ShardedStore.Configuration {
        var gate = BackendGate.Configuration()
        gate.maxConcurrentRequests = 10
        return ShardedStore.Configuration(
            placement: .shared, cacheSize: cache ? 512 << 20 : 0, cacheMaxObjectSize: 8 << 20, gate: gate)
    }

    private init(servers: ChallengeFileservers, client: HTTPClient, configuration: ShardedStore.Configuration) {
        self.servers = servers
        self.client = client
        self.configuration = configuration
    }

    static func start(
        servers count: Int = 5,
        latencyMilliseconds: Int = 333,
        configuration: ShardedStore.Configuration = FileserverGateway.configuration(cache: true)
    ) async throws -> FileserverGateway {
        let servers = try await ChallengeFileservers.start(count: count, latencyMilliseconds: latencyMilliseconds)
        let client = HTTPClient(
            eventLoopGroup: .singletonMultiThreadedEventLoopGroup,
            configuration: HTTPBackend.clientConfiguration(
                maxConnectionsPerBackend: configuration.gate.maxConcurrentRequests))
        let gateway = FileserverGateway(servers: servers, client: client, configuration: configuration)
        do {
            try await gateway.startGateway()
        } catch {
            await gateway.shutdown()
            throw error
        }
        return gateway
    }

    private func startGateway() async throws {
        let backends: [any Backend] = servers.ports.map {
            HTTPBackend(
                host: "127.0.0.1", port: $0, prefix: "/api/fileserver", client: client, logger: gatewayTestLogger)
        }
        let store = ShardedStore(backends: backends, configuration: configuration, logger: gatewayTestLogger)
        let server = CofferHTTPServer(
            store: store, configuration: HTTPServerConfiguration(host: "127.0.0.1", port: 0), logger: gatewayTestLogger)
        let port = try await server.start().port!
        current.withLock { $0 = (store, server, port) }
    }

    var store: ShardedStore { current.withLock { $0!.store } }
    var port: Int { current.withLock { $0!.port } }

    /// Stops the gateway and starts a new one (nothing remembered) over the same file servers.
    func restartGateway() async throws {
        if let old = current.withLock({ $0 }) { await old.server.shutdown() }
        try await startGateway()
    }

    /// One request through the gateway on a fresh connection.
    func request(
        _ method: HTTPMethod, _ name: String, body: [UInt8]? = nil
    ) async throws -> TestResponse {
        let connection = try await HTTPTestClient.connect(port: port, timeout: .seconds(120))
        defer { connection.close() }
        return try await connection.send(method, "/api/fileserver/" + name, body: body)
    }

    func shutdown() async {
        if let old = current.withLock({ $0 }) { await old.server.shutdown() }
        try? await client.shutdown()
        await servers.stop()
    }
}

/// Runs `body` with a fresh ``FileserverGateway``; shuts everything down afterwards, whether `body` throws.
func withFileserverGateway(
    latencyMilliseconds: Int = 333,
    configuration: ShardedStore.Configuration = FileserverGateway.configuration(cache: true),
    _ body: (FileserverGateway) async throws -> Void
) async throws {
    let gateway = try await FileserverGateway.start(
        latencyMilliseconds: latencyMilliseconds, configuration: configuration)
    do {
        try await body(gateway)
    } catch {
        await gateway.shutdown()
        throw error
    }
    await gateway.shutdown()
}

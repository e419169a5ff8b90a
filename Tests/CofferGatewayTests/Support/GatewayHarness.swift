import AsyncHTTPClient
import CofferCore
import CofferEngine
import CofferHTTP
import CofferTestKit
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization
import Testing

@testable import CofferGateway

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A fresh directory made with `mkdtemp` under /tmp, removed by ``remove()``.
struct GatewayTestDirectory: Sendable {
    let path: String

    init() throws {
        var template = Array("/tmp/coffer-gateway-test-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        guard let made else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        path = String(cString: made)
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// A quiet logger for the servers and stores under test.
let gatewayTestLogger: Logger = {
    var logger = Logger(label: "coffer-gateway-test")
    logger.logLevel = .critical
    return logger
}()

/// A real Coffer node in process: the log engine in a directory behind the HTTP server on 127.0.0.1.
struct CofferTestNode: Sendable {
    let engine: LogEngine
    let server: CofferHTTPServer
    let port: Int
    let directory: GatewayTestDirectory

    /// Starts a node on `directory`, on `port` (0: any free port).
    static func start(directory: GatewayTestDirectory, port: Int = 0) async throws -> CofferTestNode {
        var engineConfiguration = EngineConfiguration(directory: directory.path)
        engineConfiguration.ioThreads = 2
        let engine = try await LogEngine.open(engineConfiguration, logger: gatewayTestLogger)
        let server = CofferHTTPServer(
            store: engine,
            configuration: HTTPServerConfiguration(
                host: "127.0.0.1", port: port, shutdownGracePeriod: .seconds(2)),
            logger: gatewayTestLogger)
        do {
            let address = try await server.start()
            return CofferTestNode(engine: engine, server: server, port: address.port!, directory: directory)
        } catch {
            try? await engine.close()
            throw error
        }
    }

    func stop() async {
        await server.shutdown()
        try? await engine.close()
    }

    /// The bytes the node's engine holds under `key` (a gateway key such as `store/a`), or `nil`.
    func bytes(_ key: String) async throws -> [UInt8]? {
        do {
            let read = try await engine.read(BlobKey(key)!, options: ReadOptions())
            switch read.body {
            case .buffer(var buffer): return buffer.readBytes(length: buffer.readableBytes)
            case .stream(let stream):
                var out: [UInt8] = []
                for try await var chunk in stream { out += chunk.readBytes(length: chunk.readableBytes) ?? [] }
                return out
            case nil: return []
            }
        } catch let error as StoreError where error == .notFound {
            return nil
        }
    }

    func has(_ key: String) async -> Bool {
        (try? await engine.read(BlobKey(key)!, options: ReadOptions(includeBody: false))) != nil
    }
}

/// Coffer nodes behind a ``ShardedStore`` of ``HTTPBackend``s, served by the real ``CofferHTTPServer`` on port 0.
/// Nodes can be stopped, restarted (same port, same or fresh data) and added.
final class GatewayHarness: Sendable {
    private struct Slot {
        var node: CofferTestNode?
        var directory: GatewayTestDirectory
        var port: Int
    }

    private let slots: Mutex<[Slot]>
    let client: HTTPClient
    let store: ShardedStore
    let server: CofferHTTPServer
    let port: Int
    private let healthTask: Task<Void, Never>

    static let timeouts = HTTPBackend.Timeouts(
        connect: .seconds(2), firstByte: .seconds(20), read: .seconds(20), minimumUploadRate: 1 << 20)

    /// A configuration with test-friendly health settings: breakers open after 2 failures and are probed every
    /// 100 ms.
    static func configuration(replicas: Int = 1) -> ShardedStore.Configuration {
        ShardedStore.Configuration(
            replicas: replicas, healthInterval: .milliseconds(100),
            gate: BackendGate.Configuration(
                failureThreshold: 2, openCooldown: .milliseconds(300), probeTimeout: .seconds(1)))
    }

    private init(
        slots: [Slot], client: HTTPClient, store: ShardedStore, server: CofferHTTPServer, port: Int,
        healthTask: Task<Void, Never>
    ) {
        self.slots = Mutex(slots)
        self.client = client
        self.store = store
        self.server = server
        self.port = port
        self.healthTask = healthTask
    }

    /// Starts `nodes` nodes and a gateway over them.
    static func start(nodes count: Int, configuration: ShardedStore.Configuration) async throws -> GatewayHarness {
        var slots: [Slot] = []
        do {
            for _ in 0..<count {
                let directory = try GatewayTestDirectory()
                let node = try await CofferTestNode.start(directory: directory)
                slots.append(Slot(node: node, directory: directory, port: node.port))
            }
        } catch {
            for slot in slots {
                await slot.node?.stop()
                slot.directory.remove()
            }
            throw error
        }
        let client = HTTPClient(
            eventLoopGroup: .singletonMultiThreadedEventLoopGroup,
            configuration: HTTPBackend.clientConfiguration(
                maxConnectionsPerBackend: configuration.gate.maxConcurrentRequests, timeouts: timeouts))
        let backends: [any Backend] = slots.map {
            HTTPBackend(host: "127.0.0.1", port: $0.port, prefix: "/store", client: client, timeouts: timeouts)
        }
        let store = ShardedStore(backends: backends, configuration: configuration, logger: gatewayTestLogger)
        let server = CofferHTTPServer(
            store: store,
            configuration: HTTPServerConfiguration(host: "127.0.0.1", port: 0, shutdownGracePeriod: .seconds(2)),
            logger: gatewayTestLogger)
        let address = try await server.start()
        let healthTask = Task { _ = try? await store.run() }
        return GatewayHarness(
            slots: slots, client: client, store: store, server: server, port: address.port!, healthTask: healthTask)
    }

    /// Stops everything and removes the nodes' directories.
    func shutdown() async {
        healthTask.cancel()
        await server.shutdown()
        let all = slots.withLock { $0 }
        for slot in all {
            await slot.node?.stop()
            slot.directory.remove()
        }
        try? await client.shutdown()
    }

    var nodeCount: Int { slots.withLock { $0.count } }

    /// The running node at `index` (fails the test if it is stopped).
    func node(_ index: Int) -> CofferTestNode {
        slots.withLock { $0[index].node }!
    }

    /// The backend id of node `index`.
    func backendID(_ index: Int) -> String {
        "http://127.0.0.1:\(slots.withLock { $0[index].port })/store"
    }

    /// Stops node `index` (its server and engine); its data stays.
    func stopNode(_ index: Int) async {
        let node = slots.withLock { slots -> CofferTestNode? in
            defer { slots[index].node = nil }
            return slots[index].node
        }
        await node?.stop()
    }

    /// Starts node `index` again on its port, with its old data or, with `fresh`, an empty directory.
    func restartNode(_ index: Int, fresh: Bool = false) async throws {
        var directory = slots.withLock { $0[index].directory }
        if fresh {
            directory.remove()
            directory = try GatewayTestDirectory()
        }
        let port = slots.withLock { $0[index].port }
        var node: CofferTestNode?
        // The port was just released; binding it again may take a moment.
        for attempt in 0..<50 {
            do {
                node = try await CofferTestNode.start(directory: directory, port: port)
                break
            } catch {
                if attempt == 49 { throw error }
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        slots.withLock {
            $0[index].node = node
            $0[index].directory = directory
        }
    }

    /// Starts one more node and gives the gateway the enlarged backend set. Returns its index.
    func addNode() async throws -> Int {
        let directory = try GatewayTestDirectory()
        let node = try await CofferTestNode.start(directory: directory)
        let index = slots.withLock { slots in
            slots.append(Slot(node: node, directory: directory, port: node.port))
            return slots.count - 1
        }
        let ports = slots.withLock { $0.map(\.port) }
        store.update(
            backends: ports.map {
                HTTPBackend(
                    host: "127.0.0.1", port: $0, prefix: "/store", client: client, timeouts: Self.timeouts)
            })
        return index
    }

    /// One request through the gateway on a fresh connection.
    func request(
        _ method: HTTPMethod, _ path: String, headers: [(String, String)] = [], body: [UInt8]? = nil
    ) async throws -> TestResponse {
        let connection = try await HTTPTestClient.connect(port: port, timeout: .seconds(60))
        defer { connection.close() }
        return try await connection.send(method, path, headers: headers, body: body)
    }

    /// Which nodes hold `key` now.
    func holders(_ key: String) async -> [Int] {
        var found: [Int] = []
        for index in 0..<nodeCount {
            guard let node = slots.withLock({ $0[index].node }) else { continue }
            if await node.has(key) { found.append(index) }
        }
        return found
    }
}

/// Runs `body` against a fresh gateway over `nodes` nodes; shuts everything down afterwards, whether `body` throws.
func withGateway(
    nodes: Int,
    configuration: ShardedStore.Configuration = GatewayHarness.configuration(),
    _ body: (GatewayHarness) async throws -> Void
) async throws {
    let harness = try await GatewayHarness.start(nodes: nodes, configuration: configuration)
    do {
        try await body(harness)
    } catch {
        await harness.shutdown()
        throw error
    }
    await harness.shutdown()
}

/// Polls `condition` until it holds or `deadline` passes; returns whether it held.
func gatewayEventually(within deadline: Duration = .seconds(10), _ condition: () async -> Bool) async -> Bool {
    let clock = ContinuousClock()
    let end = clock.now + deadline
    while clock.now < end {
        if await condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return await condition()
}

/// Deterministic test bytes: `count` bytes from `seed` (xorshift).
func gatewayTestBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
    var out = [UInt8](repeating: 0, count: count)
    for index in 0..<count {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        out[index] = UInt8(truncatingIfNeeded: state)
    }
    return out
}

import CofferCore
import CofferEngine
import CofferTestKit
import Foundation
import Logging
import NIOCore
import NIOHTTP1

@testable import CofferHTTP

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A fresh directory made with `mkdtemp` under /tmp; every test makes its own and removes it.
struct TemporaryDirectory: Sendable {
    let path: String

    /// A new directory under `parent` (default /tmp).
    init(under parent: String = "/tmp") throws {
        var template = Array((parent + "/coffer-http-test-XXXXXX").utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        guard let made else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        path = String(cString: made)
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }

    /// Names of the files in the engine's spill directory (committed and partial).
    func blobFiles() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: path + "/blobs")) ?? []).sorted()
    }
}

/// How a test node is set up.
struct NodeOptions: Sendable {
    /// Bodies above this many bytes are spilled (streamed to their own file); `nil` keeps the engine's default.
    var inlineThreshold: Int? = nil
    /// Applied to both the HTTP server and the engine.
    var maxBlobSize: Int64? = nil
    var shutdownGracePeriod: TimeAmount = .seconds(5)
    var idleTimeout: TimeAmount = .seconds(30)
    /// Any other engine setting.
    var engine: @Sendable (inout EngineConfiguration) -> Void = { _ in }

    /// A small inline threshold so spilled (streamed) blobs are cheap to exercise.
    static let spilling = NodeOptions(inlineThreshold: 64 * 1024)
}

/// A live node under test: the real log engine in a temporary directory behind the real HTTP server, listening on an
/// ephemeral port on 127.0.0.1.
struct TestNode: Sendable {
    let engine: LogEngine
    let server: CofferHTTPServer
    let port: Int
    let directory: TemporaryDirectory

    static let logger: Logger = {
        var logger = Logger(label: "coffer-http-test")
        logger.logLevel = .critical
        return logger
    }()

    /// Opens the engine on `directory` and starts a server in front of it.
    static func start(_ options: NodeOptions = NodeOptions(), directory: TemporaryDirectory) async throws -> TestNode {
        var engineConfiguration = EngineConfiguration(directory: directory.path)
        if let threshold = options.inlineThreshold { engineConfiguration.inlineThreshold = threshold }
        if let max = options.maxBlobSize { engineConfiguration.maxBlobSize = max }
        engineConfiguration.ioThreads = 2
        options.engine(&engineConfiguration)
        let engine = try await LogEngine.open(engineConfiguration, logger: logger)
        var configuration = HTTPServerConfiguration(
            host: "127.0.0.1", port: 0, idleTimeout: options.idleTimeout,
            shutdownGracePeriod: options.shutdownGracePeriod)
        if let max = options.maxBlobSize { configuration.maxBlobSize = max }
        let server = CofferHTTPServer(store: engine, configuration: configuration, logger: logger)
        let address: SocketAddress
        do {
            address = try await server.start()
        } catch {
            try? await engine.close()
            throw error
        }
        return TestNode(engine: engine, server: server, port: address.port!, directory: directory)
    }

    /// Shuts the server down, then closes the engine (the order the node uses).
    func stop() async throws {
        await server.shutdown()
        try await engine.close()
    }

    /// A keep-alive client on a new connection.
    func client(timeout: TimeAmount = .seconds(20)) async throws -> HTTPTestClient {
        try await HTTPTestClient.connect(port: port, timeout: timeout)
    }

    /// A raw connection on which the test writes bytes itself.
    func raw(timeout: TimeAmount = .seconds(20)) async throws -> RawConnection {
        try await RawConnection.connect(port: port, timeout: timeout)
    }

    /// Stores `body` at `key` (e.g. "store/name") through the engine, with no HTTP connection that could itself idle
    /// past a short timeout on a loaded machine.
    func storeDirectly(_ key: String, _ body: [UInt8]) async throws {
        _ = try await engine.write(
            BlobKey(key)!, body: BufferedBody(buffer: ByteBuffer(bytes: body)), options: WriteOptions())
    }

    /// One request on a fresh connection, closed afterwards.
    func request(
        _ method: HTTPMethod, _ path: String, headers: [(String, String)] = [], body: [UInt8]? = nil,
        chunks: [[UInt8]]? = nil
    ) async throws -> TestResponse {
        let client = try await client()
        defer { client.close() }
        return try await client.send(method, path, headers: headers, body: body, chunks: chunks)
    }

    /// Polls `condition` until it holds or `deadline` passes; returns whether it held.
    func eventually(within deadline: Duration = .seconds(5), _ condition: () -> Bool) async -> Bool {
        let clock = ContinuousClock()
        let end = clock.now + deadline
        while clock.now < end {
            if condition() { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return condition()
    }
}

/// Runs `body` against a fresh node in its own temporary directory; stops the node and removes the directory
/// afterwards, whether `body` throws or not.
func withNode(_ options: NodeOptions = NodeOptions(), _ body: (TestNode) async throws -> Void) async throws {
    let directory = try TemporaryDirectory()
    defer { directory.remove() }
    let node = try await TestNode.start(options, directory: directory)
    do {
        try await body(node)
    } catch {
        try? await node.stop()
        throw error
    }
    try await node.stop()
}

import CofferEngine
import CofferHTTP
import Foundation
import Logging
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A real node in process: the log engine in a fresh temporary directory behind the HTTP server on 127.0.0.1, port 0.
struct BenchTestNode: Sendable {
    let engine: LogEngine
    let server: CofferHTTPServer
    let port: Int
    let directory: String

    /// Runs `body` against a fresh node, then stops it and removes its directory.
    static func with(_ body: (BenchTestNode) async throws -> Void) async throws {
        var template = Array("/tmp/coffer-bench-test-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        guard let made else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        let directory = String(cString: made)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var logger = Logger(label: "coffer-bench-test")
        logger.logLevel = .critical
        var engineConfiguration = EngineConfiguration(directory: directory)
        engineConfiguration.ioThreads = 2
        let engine = try await LogEngine.open(engineConfiguration, logger: logger)
        // Its own event loop, not the shared singleton the other suites' servers and clients run on.
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { group.shutdownGracefully { _ in } }
        let server = CofferHTTPServer(
            store: engine, configuration: HTTPServerConfiguration(host: "127.0.0.1", port: 0), logger: logger,
            group: group)
        let address: SocketAddress
        do {
            address = try await server.start()
        } catch {
            try? await engine.close()
            throw error
        }
        let node = BenchTestNode(engine: engine, server: server, port: address.port!, directory: directory)
        do {
            try await body(node)
        } catch {
            await server.shutdown()
            try? await engine.close()
            throw error
        }
        await server.shutdown()
        try await engine.close()
    }
}

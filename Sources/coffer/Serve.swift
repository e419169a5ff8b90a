import ArgumentParser
import CofferCore
import CofferEngine
import CofferHTTP
import Logging
import NIOCore
import ServiceLifecycle

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a storage node: the HTTP API over the local log engine."
    )

    @Option(name: [.customShort("s"), .long], help: "Address to listen on, HOST:PORT.")
    var listen: String = "0.0.0.0:7777"

    @Option(help: "Data directory (created if missing).")
    var dir: String = "./data"

    @Flag(name: [.customShort("D"), .long], help: "Log at debug level.")
    var debug = false

    @Option(help: "Largest blob accepted (bytes, or with a unit: 64MiB, 5GiB).")
    var maxBlobSize: ByteSize = ByteSize(bytes: 5 << 30)

    @Option(help: "Close connections idle for this many seconds.")
    var idleTimeout: Int64 = 60

    func validate() throws {
        _ = try ListenAddress(listen)
        guard maxBlobSize.bytes > 0 else { throw ValidationError("--max-blob-size must be positive") }
        guard idleTimeout > 0 else { throw ValidationError("--idle-timeout must be positive") }
    }

    func run() async throws {
        bootstrapLogging(level: debug ? .debug : .info)
        let logger = Logger(label: "coffer")
        let address = try ListenAddress(listen)

        var engineConfiguration = EngineConfiguration(directory: dir)
        engineConfiguration.maxBlobSize = maxBlobSize.bytes
        // For benchmarks: COFFER_SENDFILE=0 sends large blobs through memory, as before sendfile.
        if getenv("COFFER_SENDFILE").map({ String(cString: $0) }) == "0" { engineConfiguration.fileSliceSize = 0 }
        let engine = try await LogEngine.open(engineConfiguration, logger: logger)

        let server = CofferHTTPServer(
            store: engine,
            configuration: HTTPServerConfiguration(
                host: address.host, port: address.port, maxBlobSize: maxBlobSize.bytes,
                idleTimeout: .seconds(idleTimeout)),
            logger: logger)
        do {
            try await server.start()
        } catch {
            try? await engine.close()
            throw error
        }
        // Shut down in reverse order: the server drains first, then the engine flushes.
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [
                    .init(service: EngineService(engine: engine)),
                    .init(service: server),
                ],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        try await group.run()
    }
}

/// Keeps the engine open while the node runs and closes it (flushing the group commit) on shutdown.
struct EngineService: Service {
    let engine: LogEngine

    func run() async throws {
        try? await gracefulShutdown()
        try await engine.close()
    }
}

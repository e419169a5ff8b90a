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

    @OptionGroup var server: ServerOptions

    @Option(help: "Data directory (created if missing).")
    var dir: String = "./data"

    static let defaultListen = ListenAddress(host: "0.0.0.0", port: 7777)

    func run() async throws {
        bootstrapLogging(level: server.debug ? .debug : .info)
        let logger = Logger(label: "coffer")
        Self.tuneMalloc()
        OpenFileLimit.raise(logger: logger)

        var engineConfiguration = EngineConfiguration(directory: dir)
        engineConfiguration.maxBlobSize = server.maxBlobSize.bytes
        // For benchmarks: COFFER_SENDFILE=0 sends large blobs through memory, as before sendfile.
        if getenv("COFFER_SENDFILE").map({ String(cString: $0) }) == "0" { engineConfiguration.fileSliceSize = 0 }
        let engine = try await LogEngine.open(engineConfiguration, logger: logger)

        let http = CofferHTTPServer(
            store: engine, configuration: server.httpConfiguration(defaultListen: Self.defaultListen), logger: logger)
        do {
            try await http.start()
        } catch {
            try? await engine.close()
            throw error
        }
        // Shut down in reverse order: the server drains first, then the engine flushes.
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [
                    .init(service: EngineService(engine: engine)),
                    .init(service: http),
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

extension Serve {
    /// Inline records (up to 1 MiB) are read into buffers that live for one response. glibc serves allocations that
    /// large with a fresh `mmap` (or trims them back to the kernel from a thread's arena with `madvise`), so every
    /// read paid for page faults and zeroing: a fifth of the CPU of a GET 1 MiB load. Keeping allocations below
    /// 4 MiB in the arenas and trimming only past 64 MiB of free top lets them be reused. Memory held is bounded by
    /// the peak of concurrent reads; larger blobs are streamed in small slices and never allocated whole.
    static func tuneMalloc() {
        #if canImport(Glibc)
        // Swift's Glibc module leaves out <malloc.h>: look `mallopt` up. Its parameters, from <malloc.h>:
        // M_TRIM_THRESHOLD = -1, M_MMAP_THRESHOLD = -3.
        typealias MallOpt = @convention(c) (Int32, Int32) -> Int32
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return }
        let mallopt = unsafeBitCast(symbol, to: MallOpt.self)
        _ = mallopt(-3, 4 << 20)
        _ = mallopt(-1, 64 << 20)
        #endif
    }
}

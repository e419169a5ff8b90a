import ArgumentParser
import CofferEngine
import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

struct Compact: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compact a data directory offline: rewrite sealed segments holding garbage, then exit.",
        discussion: "The node must not be running on the directory (the engine's lock refuses a second process)."
    )

    @Option(help: "Data directory.")
    var dir: String = "./data"

    @Option(help: "Compact segments whose share of garbage is at least this (0 to 1).")
    var threshold: Double = 0.0

    @Flag(name: [.customShort("D"), .long], help: "Log at debug level.")
    var debug = false

    func validate() throws {
        guard (0...1).contains(threshold) else { throw ValidationError("--threshold must be between 0 and 1") }
        // Offline maintenance of a directory that is not there is a typo: never create one.
        guard access(dir + "/" + Format.segmentsDirectory, F_OK) == 0 else {
            throw ValidationError("\(dir) is not a Coffer data directory (no \(Format.segmentsDirectory)/ in it)")
        }
    }

    func run() async throws {
        bootstrapLogging(level: debug ? .debug : .info)
        var configuration = EngineConfiguration(directory: dir)
        configuration.compactionInterval = nil
        let engine = try await LogEngine.open(configuration, logger: Logger(label: "coffer"))
        do {
            let report = try await engine.compact(threshold: threshold)
            print(
                "compacted \(report.segmentsCompacted) segments: \(report.recordsRelocated) records relocated, "
                    + "\(report.bytesReclaimed) bytes of segment files removed, \(report.segmentsKept) kept")
        } catch {
            try? await engine.close()
            throw error
        }
        try await engine.close()
    }
}

import ArgumentParser
import CofferBench
import FoundationEssentials

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Load-test a blob server over HTTP/1.1 and check every answer against what was acknowledged.",
        discussion: """
            Sends GET/PUT/POST/DELETE to URL/KEY over --concurrency keep-alive connections. Each connection owns a \
            slice of the key space and remembers, per key, the version it last acknowledged; every 2xx GET is \
            compared byte for byte with it (bodies are derived from the key and version, so nothing is stored). \
            Wrong bytes count as invalid, a 404 for an acknowledged write as lost. Works against /store, /object, \
            /api/fileserver and any server taking PUT, GET and DELETE (nginx WebDAV). Keys are letters and digits \
            under a random prefix, so each run starts from absent keys; with GETs in the mix every key is PUT once \
            before the warmup (--no-prefill to skip), and every key is read back once after the run, checked like any \
            other answer (--no-final-check to skip).

            Exit status: 0 when every answer was consistent; 1 when any data was invalid or lost; 64 bad arguments.
            """
    )

    @Option(help: "Where to send requests: http://HOST:PORT/PREFIX (keys are appended as /KEY).")
    var url: String

    @Option(help: "Measured time (30s, 500ms, 2m).")
    var duration: String = "10s"

    @Option(help: "Load before the measured time, not counted.")
    var warmup: String = "0s"

    @Option(name: [.customShort("c"), .long], help: "Connections, one request in flight on each.")
    var concurrency: Int = 64

    @Option(help: "Body size of writes: SIZE or MIN-MAX (1KiB, 1KiB-1MiB).")
    var size: String = "1KiB"

    @Option(help: "Operation weights: get=90,put=10 (also post=, delete=).")
    var mix: String = "get=90,put=10"

    @Option(help: "Number of distinct keys.")
    var keys: Int = 1000

    @Option(help: "Open loop: total requests per second; latency counts from the intended send time.")
    var rate: Double?

    @Flag(help: "Step the load up: --ramp-stages stages, each a share of --concurrency (or --rate), each reported.")
    var ramp = false

    @Option(help: "Stages with --ramp.")
    var rampStages: Int = 4

    @Option(help: "Key prefix (letters and digits; default random, so a run starts from absent keys).")
    var keyPrefix: String?

    @Flag(help: "Do not PUT every key before the warmup.")
    var noPrefill = false

    @Flag(help: "Do not GET every key once after the run.")
    var noFinalCheck = false

    @Option(help: "Event loop threads for the connections (default: one per core).")
    var threads: Int?

    @Option(help: "Seed for the choice of operations and keys.")
    var seed: UInt64?

    @Flag(help: "Print the report as JSON.")
    var json = false

    @Flag(help: "No live progress line (it is drawn on standard error only when that is a terminal).")
    var quiet = false

    func makeConfiguration() throws -> BenchConfiguration {
        do {
            var configuration = BenchConfiguration(
                target: try BenchTarget(parsing: url), mix: try OperationMix(parsing: mix))
            configuration.duration = try parseBenchDuration(duration)
            configuration.warmup = try parseBenchDuration(warmup)
            configuration.concurrency = concurrency
            configuration.sizes = try SizeRange(parsing: size)
            configuration.keys = keys
            configuration.rate = rate
            configuration.rampStages = ramp ? rampStages : 1
            if let keyPrefix { configuration.keyPrefix = keyPrefix }
            if noPrefill { configuration.prefill = false }
            if noFinalCheck { configuration.finalCheck = false }
            if let threads { configuration.eventLoops = threads }
            if let seed { configuration.seed = seed }
            try configuration.validate()
            return configuration
        } catch {
            throw ValidationError(error.description)
        }
    }

    func validate() throws {
        _ = try makeConfiguration()
    }

    func run() async throws {
        bootstrapLogging(level: .warning)
        let configuration = try makeConfiguration()
        let live = !quiet && isatty(2) == 1
        var progress: (@Sendable (BenchProgress) -> Void)? = nil
        if live { progress = { StandardError.write("\r\u{1B}[K" + $0.line) } }
        let report = try await BenchRunner.run(configuration, progress: progress)
        if live { StandardError.write("\r\u{1B}[K") }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            print(report.text)
        }
        if report.exitCode != 0 { throw ExitCode(report.exitCode) }
    }
}

import NIOCore
import Testing

@testable import CofferBench

/// Whole runs of the load generator: against a real node (every answer consistent), and against servers that
/// return wrong bytes or forget acknowledged writes (caught, and the exit status says so).
@Suite struct BenchRunTests {
    func configuration(port: Int, path: String, mix: String) throws -> BenchConfiguration {
        var configuration = BenchConfiguration(
            target: BenchTarget(host: "127.0.0.1", port: port, basePath: path), mix: try OperationMix(parsing: mix))
        configuration.duration = .milliseconds(1500)
        configuration.concurrency = 8
        configuration.keys = 200
        configuration.eventLoops = 2
        configuration.requestTimeout = .seconds(10)
        // Open loop at a modest rate: enough to exercise every path without starving the suites running beside.
        configuration.rate = 500
        return configuration
    }

    @Test func mixedLoadOnRealNodeIsConsistent() async throws {
        try await BenchTestNode.with { node in
            var configuration = try configuration(
                port: node.port, path: "/store", mix: "get=70,put=15,post=5,delete=10")
            configuration.sizes = SizeRange(0, 96 * 1024)
            configuration.warmup = .milliseconds(300)
            let report = try await BenchRunner.run(configuration)
            #expect(report.total.requests > 0)
            #expect(report.invalid == 0)
            #expect(report.lost == 0)
            #expect(report.exitCode == 0)
            #expect(report.total.status.errors == 0)
            #expect(report.total.status.serverError == 0)
            #expect(report.unmeasuredRequests >= 200, "the prefill PUTs every key")
            #expect(report.unmeasuredErrors == 0)
            let byOperation = Dictionary(uniqueKeysWithValues: report.total.operations.map { ($0.operation, $0) })
            // PUTs always succeed; GETs and DELETEs find data or answer 404; POSTs create or answer 409.
            #expect(byOperation[.put].map { $0.status.success == $0.requests } == true)
            #expect(byOperation[.get].map { $0.status.success > 0 } == true)
            for operation in BenchOperation.allCases {
                guard let stats = byOperation[operation] else { continue }
                #expect(stats.status.success + stats.status.clientError == stats.requests, "\(operation)")
                #expect(stats.latencyMs.p50 > 0 && stats.latencyMs.p50 <= stats.latencyMs.max)
            }
            #expect(report.total.bytesInPerSecond > 0 && report.total.bytesOutPerSecond > 0)
            #expect(report.text.split(separator: "\n")[1] == "integrity: 0 invalid, 0 lost")
        }
    }

    @Test func openLoopRampOnObjectRoutes() async throws {
        try await BenchTestNode.with { node in
            var configuration = try configuration(port: node.port, path: "/object", mix: "get=80,put=20")
            configuration.rate = 400
            configuration.rampStages = 2
            configuration.duration = .seconds(1)
            let report = try await BenchRunner.run(configuration)
            #expect(report.stages.count == 2)
            #expect(report.stages.map(\.rate) == [200, 400])
            #expect(report.invalid == 0 && report.lost == 0)
            #expect(report.total.status.success == report.total.requests)
            // Open loop: about the asked rate, not as fast as possible.
            #expect(report.total.requests > 100 && report.total.requests < 450, "\(report.total.requests)")
        }
    }

    @Test func largeBodiesStreamBothWays() async throws {
        try await BenchTestNode.with { node in
            var configuration = try configuration(port: node.port, path: "/store", mix: "get=50,put=50")
            // Over the engine's 1 MiB inline threshold (spilled, streamed back) and sent in parts.
            configuration.sizes = SizeRange(1 << 20, 3 << 20)
            configuration.concurrency = 2
            configuration.keys = 4
            configuration.rate = 20
            configuration.duration = .seconds(1)
            let report = try await BenchRunner.run(configuration)
            // Few and slow under a loaded debug build: what counts is that every one arrived whole.
            #expect(report.total.requests > 0)
            #expect(report.total.status.success == report.total.requests)
            #expect(report.invalid == 0 && report.lost == 0)
            #expect(
                (report.total.bytesInPerSecond + report.total.bytesOutPerSecond) * report.total.seconds >= 1_048_576)
        }
    }

    @Test func honestTestServerIsConsistent() async throws {
        let server = try await FaultyServer.start(.none)
        defer { Task { await server.stop() } }
        let report = try await BenchRunner.run(
            try configuration(port: server.port, path: "", mix: "get=60,put=20,post=10,delete=10"))
        #expect(report.total.requests > 0)
        #expect(report.invalid == 0 && report.lost == 0 && report.exitCode == 0)
    }

    @Test func wrongBytesAreCaught() async throws {
        let server = try await FaultyServer.start(.flipByte)
        defer { Task { await server.stop() } }
        let report = try await BenchRunner.run(try configuration(port: server.port, path: "/x", mix: "get=90,put=10"))
        #expect(report.invalid > 0)
        #expect(report.total.invalid > 0)
        #expect(report.exitCode == 1)
        // Shown first: the line after the heading.
        #expect(report.text.split(separator: "\n")[1].hasPrefix("INTEGRITY FAILED: \(report.invalid) invalid"))
    }

    @Test func forgottenWritesAreLost() async throws {
        let server = try await FaultyServer.start(.forget)
        defer { Task { await server.stop() } }
        let report = try await BenchRunner.run(try configuration(port: server.port, path: "", mix: "get=50,put=50"))
        #expect(report.lost > 0)
        #expect(report.invalid == 0)
        #expect(report.exitCode == 1)
    }

    @Test func finalCheckReadsEveryKeyBack() async throws {
        let server = try await FaultyServer.start(.forget)
        defer { Task { await server.stop() } }
        // Only writes during the run: the loss shows only when the keys are read back afterwards.
        var configuration = try configuration(port: server.port, path: "", mix: "put=1")
        configuration.duration = .milliseconds(500)
        configuration.finalCheck = false
        let unchecked = try await BenchRunner.run(configuration)
        #expect(unchecked.lost == 0 && unchecked.exitCode == 0)
        configuration.finalCheck = true
        configuration.keyPrefix += "x"
        let checked = try await BenchRunner.run(configuration)
        #expect(checked.lost > 0 && checked.exitCode == 1)
        #expect(checked.unmeasuredRequests >= configuration.keys)
    }

    @Test func refusedConnectionsAreErrorsNotIntegrityFailures() async throws {
        // A port nothing listens on (bound by the server, then released).
        let server = try await FaultyServer.start(.none)
        let port = server.port
        await server.stop()
        var configuration = try configuration(port: port, path: "", mix: "get=50,put=50")
        configuration.prefill = false
        configuration.duration = .milliseconds(500)
        let report = try await BenchRunner.run(configuration)
        #expect(report.total.status.errors > 0)
        #expect(report.total.status.errors < 100, "a refused connection is retried after a pause, not in a loop")
        #expect(report.total.status.success == 0)
        #expect(report.exitCode == 0)
    }
}

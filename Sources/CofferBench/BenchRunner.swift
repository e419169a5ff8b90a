import NIOCore
import NIOPosix

/// One line of live progress, once a second.
public struct BenchProgress: Sendable {
    /// `prefill`, `warmup`, `run`, or `stage K/N`.
    public var phase: String
    public var elapsedSeconds: Double
    /// Answers in the last second.
    public var requestsPerSecond: Int
    /// Errors (no answer, or 5xx) in the last second.
    public var errors: Int
    /// The 99th percentile latency of the last second, in milliseconds.
    public var p99Ms: Double
    /// So far, over the whole run.
    public var invalid: Int
    public var lost: Int

    /// `stage 1/2  12.0s  45123 req/s  0 errors  p99 3.1 ms  invalid 0  lost 0`
    public var line: String {
        "\(phase)  \(format(elapsedSeconds, 1))s  \(requestsPerSecond) req/s  \(errors) errors  "
            + "p99 \(format(p99Ms, 2)) ms  invalid \(invalid)  lost \(lost)"
    }
}

/// Runs a benchmark: opens one connection per concurrency slot on its own event loop group, prefills, warms up,
/// measures each stage, reads every key back once (the final check), and reports.
public enum BenchRunner {
    /// Runs `configuration` to its end; `progress` is called once a second from a task (not an event loop).
    public static func run(
        _ configuration: BenchConfiguration, progress: (@Sendable (BenchProgress) -> Void)? = nil
    ) async throws -> BenchReport {
        try configuration.validate()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: configuration.eventLoops)
        do {
            let report = try await run(configuration, group: group, progress: progress)
            try? await group.shutdownGracefully()
            return report
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
    }

    private static func run(
        _ configuration: BenchConfiguration, group: MultiThreadedEventLoopGroup,
        progress: (@Sendable (BenchProgress) -> Void)?
    ) async throws -> BenchReport {
        let loops = Array(group.makeIterator())
        let shards = loops.map { _ in StatsShard(stages: configuration.rampStages) }
        let connections = (0..<configuration.concurrency).map {
            BenchConnection(
                index: $0, loop: loops[$0 % loops.count], configuration: configuration, shard: shards[$0 % loops.count])
        }
        let began = NIODeadline.now()
        if configuration.prefill {
            progress?(
                BenchProgress(
                    phase: "prefill", elapsedSeconds: 0, requestsPerSecond: 0, errors: 0, p99Ms: 0,
                    invalid: 0, lost: 0))
            let done = connections.map { connection in connection.loop.flatSubmit { connection.sweep(.put) } }
            try await EventLoopFuture.andAllSucceed(done, on: loops[0]).get()
            for shard in shards { _ = shard.takeInterval() }
        }
        let start = NIODeadline.now() + .milliseconds(5)
        let measureStart = start + .nanoseconds(Int64(configuration.warmup.seconds * 1e9))
        let timing = RunTiming(
            start: start, measureStart: measureStart,
            end: measureStart + .nanoseconds(Int64(configuration.duration.seconds * 1e9)),
            stages: configuration.rampStages)
        let finished = connections.map { connection in connection.loop.flatSubmit { connection.run(timing) } }
        let timeout = TimeAmount.nanoseconds(Int64(configuration.requestTimeout.seconds * 1e9))
        let abort = loops[0].scheduleTask(deadline: timing.end + timeout) {
            for connection in connections { connection.loop.execute { connection.abort() } }
        }

        // Once a second: the progress line, and the per-second counts for the best second.
        var perSecond = [[Int]](repeating: [], count: configuration.rampStages)
        var tick: Int64 = 1
        while true {
            let due = start + .seconds(tick)
            let wait = due - .now()
            if wait > .zero { try? await Task.sleep(nanoseconds: UInt64(wait.nanoseconds)) }
            let interval = shards.reduce(into: IntervalStats()) { $0.merge($1.takeInterval()) }
            if due - .seconds(1) >= timing.measureStart, due <= timing.end,
                let stage = timing.stage(at: due - .milliseconds(500))
            {
                perSecond[stage].append(interval.requests)
            }
            if let progress {
                let integrity = shards.reduce(into: (0, 0)) { sum, shard in
                    let counts = shard.integrity()
                    sum.0 += counts.invalid
                    sum.1 += counts.lost
                }
                let stage = timing.stage(at: due - .milliseconds(1))
                let phase =
                    stage.map { configuration.rampStages == 1 ? "run" : "stage \($0 + 1)/\(configuration.rampStages)" }
                    ?? "warmup"
                progress(
                    BenchProgress(
                        phase: phase, elapsedSeconds: Double((due - began).nanoseconds) / 1e9,
                        requestsPerSecond: interval.requests, errors: interval.errors,
                        p99Ms: interval.latency.totalCount == 0
                            ? 0 : Double(interval.latency.valueAtPercentile(99)) / 1000,
                        invalid: integrity.0, lost: integrity.1))
            }
            if due >= timing.end { break }
            tick += 1
        }
        try await EventLoopFuture.andAllSucceed(finished, on: loops[0]).get()
        abort.cancel()
        if configuration.finalCheck {
            let done = connections.map { connection in connection.loop.flatSubmit { connection.sweep(.get) } }
            try await EventLoopFuture.andAllSucceed(done, on: loops[0]).get()
        }
        return report(configuration, shards: shards.map { $0.snapshot() }, timing: timing, perSecond: perSecond)
    }

    private static func report(
        _ configuration: BenchConfiguration, shards: [StatsShard.State], timing: RunTiming, perSecond: [[Int]]
    ) -> BenchReport {
        let stageSeconds = Double(timing.stageLength.nanoseconds) / 1e9
        var stages: [StageReport] = []
        var all = StageStats()
        for stage in 0..<configuration.rampStages {
            var stats = StageStats()
            for shard in shards { stats.merge(shard.stages[stage]) }
            all.merge(stats)
            stages.append(
                StageReport(
                    stage: stage + 1, concurrency: configuration.activeConnections(stage: stage),
                    rate: configuration.stageRate(stage: stage), seconds: stageSeconds, stats: stats,
                    perSecond: perSecond[stage]))
        }
        let total = StageReport(
            stage: 0, concurrency: configuration.concurrency, rate: configuration.rate,
            seconds: configuration.duration.seconds, stats: all, perSecond: perSecond.flatMap { $0 })
        let invalid = shards.reduce(0) { $0 + $1.invalid }
        let lost = shards.reduce(0) { $0 + $1.lost }
        return BenchReport(
            target: configuration.target.description, mix: configuration.mix.description,
            sizes: configuration.sizes.description, keys: configuration.keys, keyPrefix: configuration.keyPrefix,
            concurrency: configuration.concurrency, rate: configuration.rate,
            durationSeconds: configuration.duration.seconds, warmupSeconds: configuration.warmup.seconds,
            invalid: invalid, lost: lost,
            unmeasuredRequests: shards.reduce(0) { $0 + $1.unmeasured },
            unmeasuredErrors: shards.reduce(0) { $0 + $1.unmeasuredErrors }, total: total, stages: stages,
            exitCode: invalid > 0 || lost > 0 ? 1 : 0)
    }
}

extension Duration {
    /// The duration in seconds.
    var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}

/// `value` with `digits` decimals.
func format(_ value: Double, _ digits: Int) -> String {
    var factor = 1.0
    for _ in 0..<digits { factor *= 10 }
    let rounded = (value * factor).rounded() / factor
    var text = String(rounded)
    if text.hasSuffix(".0") && digits == 0 { text.removeLast(2) }
    if let dot = text.firstIndex(of: "."), digits > 0 {
        let decimals = text.distance(from: dot, to: text.endIndex) - 1
        if decimals < digits { text += String(repeating: "0", count: digits - decimals) }
    } else if digits > 0, !text.contains("e") {
        text += "." + String(repeating: "0", count: digits)
    }
    return text
}

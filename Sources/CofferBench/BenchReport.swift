import Histogram

/// Requests by how they ended.
public struct StatusCounts: Codable, Sendable, Equatable {
    public var success = 0
    public var redirect = 0
    public var clientError = 0
    public var serverError = 0
    /// No complete answer: refused, reset or closed connections, timeouts.
    public var errors = 0

    enum CodingKeys: String, CodingKey {
        case success = "2xx"
        case redirect = "3xx"
        case clientError = "4xx"
        case serverError = "5xx"
        case errors
    }

    init(_ counts: [Int]) {
        success = counts[StatusClass.success.rawValue]
        redirect = counts[StatusClass.redirect.rawValue]
        clientError = counts[StatusClass.clientError.rawValue]
        serverError = counts[StatusClass.serverError.rawValue]
        errors = counts[StatusClass.error.rawValue]
    }

    public var total: Int { success + redirect + clientError + serverError + errors }
}

/// Latency percentiles in milliseconds, from the intended send time to the end of the answer.
public struct LatencySummary: Codable, Sendable, Equatable {
    public var p50: Double
    public var p90: Double
    public var p99: Double
    public var p999: Double
    public var max: Double
    public var mean: Double

    enum CodingKeys: String, CodingKey {
        case p50, p90, p99
        case p999 = "p99.9"
        case max, mean
    }

    init(_ histogram: Histogram<UInt64>) {
        func ms(_ micros: UInt64) -> Double { Double(micros) / 1000 }
        let empty = histogram.totalCount == 0
        p50 = empty ? 0 : ms(histogram.valueAtPercentile(50))
        p90 = empty ? 0 : ms(histogram.valueAtPercentile(90))
        p99 = empty ? 0 : ms(histogram.valueAtPercentile(99))
        p999 = empty ? 0 : ms(histogram.valueAtPercentile(99.9))
        max = empty ? 0 : ms(histogram.max)
        mean = empty ? 0 : histogram.mean / 1000
    }
}

/// One operation within a stage.
public struct OperationReport: Codable, Sendable {
    public var operation: BenchOperation
    public var requests: Int
    public var status: StatusCounts
    public var latencyMs: LatencySummary
}

/// One measured stage (or all of them together).
public struct StageReport: Codable, Sendable {
    /// 1-based; 0 for the whole run.
    public var stage: Int
    /// Connections sending (closed loop) or open (open loop).
    public var concurrency: Int
    /// Target requests per second, in open-loop mode.
    public var rate: Double?
    public var seconds: Double
    public var requests: Int
    public var status: StatusCounts
    public var requestsPerSecond: Double
    /// The most requests answered in one whole second of the stage.
    public var bestSecond: Int
    public var bytesInPerSecond: Double
    public var bytesOutPerSecond: Double
    public var invalid: Int
    public var lost: Int
    public var latencyMs: LatencySummary
    public var operations: [OperationReport]

    init(stage: Int, concurrency: Int, rate: Double?, seconds: Double, stats: StageStats, perSecond: [Int]) {
        self.stage = stage
        self.concurrency = concurrency
        self.rate = rate
        self.seconds = seconds
        var counts = [Int](repeating: 0, count: StatusClass.allCases.count)
        var all = Histogram<UInt64>(numberOfSignificantValueDigits: .three)
        var operations: [OperationReport] = []
        for operation in BenchOperation.allCases {
            let stats = stats.operations[operation.index]
            for i in counts.indices { counts[i] += stats.status[i] }
            all.add(stats.latency)
            guard stats.requests > 0 else { continue }
            operations.append(
                OperationReport(
                    operation: operation, requests: stats.requests, status: StatusCounts(stats.status),
                    latencyMs: LatencySummary(stats.latency)))
        }
        self.operations = operations
        status = StatusCounts(counts)
        requests = status.total
        let divisor = Swift.max(seconds, 0.001)
        requestsPerSecond = Double(requests) / divisor
        bestSecond = perSecond.max() ?? Int(requestsPerSecond.rounded())
        bytesInPerSecond = Double(stats.bytesIn) / divisor
        bytesOutPerSecond = Double(stats.bytesOut) / divisor
        invalid = stats.invalid
        lost = stats.lost
        latencyMs = LatencySummary(all)
    }
}

/// The outcome of a run: integrity first, then the measured stages.
public struct BenchReport: Codable, Sendable {
    public var target: String
    public var mix: String
    public var sizes: String
    public var keys: Int
    public var keyPrefix: String
    public var concurrency: Int
    public var rate: Double?
    public var durationSeconds: Double
    public var warmupSeconds: Double
    /// GETs that returned bytes no acknowledged or in-doubt write produced, over the whole run (prefill, warmup and
    /// the final check included).
    public var invalid: Int
    /// Acknowledged writes answered as absent, over the whole run.
    public var lost: Int
    /// Requests outside the measured time (prefill, warmup, the final check), and how many of them failed.
    public var unmeasuredRequests: Int
    public var unmeasuredErrors: Int
    /// Every stage together.
    public var total: StageReport
    public var stages: [StageReport]

    /// 0 when every answer was consistent; 1 when any data was invalid or lost.
    public var exitCode: Int32
}

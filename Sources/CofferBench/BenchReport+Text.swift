extension BenchReport {
    /// The report as a table for people: integrity first, then each stage (or the run).
    public var text: String {
        var lines: [String] = []
        let rate = rate.map { "  rate \(format($0, 0)) req/s" } ?? ""
        lines.append(
            "coffer bench \(target)  c=\(concurrency)\(rate)  mix \(mix)  size \(sizes)  keys \(keys) "
                + "(\(keyPrefix)k*)  \(format(durationSeconds, 1)) s + \(format(warmupSeconds, 1)) s warmup")
        if invalid > 0 || lost > 0 {
            lines.append("INTEGRITY FAILED: \(invalid) invalid (wrong bytes), \(lost) lost (acknowledged, then 404)")
        } else {
            lines.append("integrity: 0 invalid, 0 lost")
        }
        if unmeasuredRequests > 0 {
            lines.append(
                "unmeasured (prefill, warmup, final check): \(unmeasuredRequests) requests, \(unmeasuredErrors) errors")
        }
        if stages.count > 1 {
            for stage in stages {
                let load = stage.rate.map { "rate \(format($0, 0)) req/s" } ?? "c=\(stage.concurrency)"
                lines.append("")
                lines.append("stage \(stage.stage)/\(stages.count): \(load), \(format(stage.seconds, 1)) s")
                lines += Self.lines(stage)
            }
            lines.append("")
            lines.append("all stages:")
        }
        lines += Self.lines(total)
        return lines.joined(separator: "\n")
    }

    private static func lines(_ stage: StageReport) -> [String] {
        var lines: [String] = []
        let status = stage.status
        if stage.invalid > 0 || stage.lost > 0 {
            lines.append("  invalid \(stage.invalid)  lost \(stage.lost)")
        }
        lines.append(
            "  requests \(stage.requests)  2xx \(status.success)  3xx \(status.redirect)  4xx \(status.clientError)  "
                + "5xx \(status.serverError)  errors \(status.errors)")
        lines.append(
            "  throughput \(format(stage.requestsPerSecond, 1)) req/s average, \(stage.bestSecond) best second; "
                + "in \(mebibytes(stage.bytesInPerSecond)) MiB/s, out \(mebibytes(stage.bytesOutPerSecond)) MiB/s")
        lines.append(row(["latency ms", "requests", "p50", "p90", "p99", "p99.9", "max"]))
        for operation in stage.operations {
            lines.append(latencyRow(operation.operation.rawValue, operation.requests, operation.latencyMs))
        }
        if stage.operations.count > 1 { lines.append(latencyRow("all", stage.requests, stage.latencyMs)) }
        return lines
    }

    private static func latencyRow(_ name: String, _ requests: Int, _ latency: LatencySummary) -> String {
        row(
            [name, "\(requests)"]
                + [latency.p50, latency.p90, latency.p99, latency.p999, latency.max].map { format($0, 2) })
    }

    private static func row(_ cells: [String]) -> String {
        let first = cells[0].padding(12)
        return "  " + first + cells.dropFirst().map { $0.leftPadding(10) }.joined()
    }

    private static func mebibytes(_ bytes: Double) -> String { format(bytes / 1_048_576, 2) }
}

extension String {
    fileprivate func padding(_ width: Int) -> String {
        count >= width ? self + " " : self + String(repeating: " ", count: width - count)
    }

    fileprivate func leftPadding(_ width: Int) -> String {
        count >= width ? " " + self : String(repeating: " ", count: width - count) + self
    }
}

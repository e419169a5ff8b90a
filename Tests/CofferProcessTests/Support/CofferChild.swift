import CofferTestKit
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Why a child process could not be used.
struct ChildNodeError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// One run of the real `coffer` binary as a child process (`coffer serve` or `coffer gateway`), normally on
/// `127.0.0.1:0`: the port is read back from the "listening" log line. Its standard output and error go to a log file
/// of its own, so the test can read what it logged and keep it for a post-mortem. A ``ChildProcess``: reaped with
/// `waitpid`, every wait bounded, killed (SIGKILL) by `deinit` if still running, so a test that failed half-way leaves
/// nothing behind.
class CofferChild: @unchecked Sendable {
    let process: ChildProcess
    let logPath: String
    /// Names the child in errors ("coffer serve", "coffer gateway").
    let name: String
    private let portCache = Mutex<Int?>(nil)

    /// Starts `coffer COMMAND`, logging to `logPath`; returns at once (see ``waitUntilReady(within:)``). With a
    /// `launcher` (such as `["prlimit", "--nofile=64"]`) the binary runs under it.
    init(command arguments: [String], logPath: String, launcher: [String] = []) throws {
        self.logPath = logPath
        self.name = "coffer \(arguments.first ?? "")"
        guard FileManager.default.createFile(atPath: logPath, contents: nil) else {
            throw ChildNodeError("cannot create \(logPath)")
        }
        let command = launcher + [try CofferBinary.path()] + arguments
        self.process = try ChildProcess(command[0], Array(command.dropFirst()), logPath: logPath)
    }

    var pid: pid_t { process.pid }
    var isRunning: Bool { process.isRunning }

    /// The child's peak resident set size (`VmHWM` in /proc/PID/status), in bytes.
    var peakResidentBytes: Int? { Self.status(pid, field: "VmHWM:") }

    /// The child's resident set size now (`VmRSS`), in bytes.
    var residentBytes: Int? { Self.status(pid, field: "VmRSS:") }

    static func status(_ pid: pid_t, field: String) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix(field) }),
            let kib = line.split(separator: " ").dropFirst().first.flatMap({ Int($0) })
        else { return nil }
        return kib * 1024
    }

    /// Everything the child wrote so far (standard output and standard error).
    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// The port the child listens on, once it logged it (`listening address=[IPv4]127.0.0.1/127.0.0.1:PORT`).
    var port: Int? {
        if let known = portCache.withLock({ $0 }) { return known }
        guard let line = log.split(separator: "\n").first(where: { $0.hasSuffix("listening") }),
            let value = LogLine.metadata(line)["address"], let colon = value.lastIndex(of: ":"),
            let port = Int(value[value.index(after: colon)...])
        else { return nil }
        portCache.withLock { $0 = port }
        return port
    }

    /// Waits until the child logged its port and answers `GET /health` with 200; fails early if it exits.
    func waitUntilReady(within limit: Duration = .seconds(30)) async throws {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            guard isRunning else {
                throw ChildNodeError(
                    "\(name) exited before it was ready (\(exitStatus.map(\.description) ?? "?")); log:\n\(log)")
            }
            if let port, await Self.healthy(port: port) { return }
            try await Task.sleep(for: .milliseconds(5))
        }
        throw ChildNodeError("\(name) not ready within \(limit); log:\n\(log)")
    }

    /// Whether `GET /health` on `port` answers 200 right now.
    static func healthy(port: Int) async -> Bool {
        guard let client = try? await HTTPTestClient.connect(port: port, timeout: .seconds(5)) else { return false }
        defer { client.close() }
        return (try? await client.send(.GET, "/health").status) == 200
    }

    /// Sends `signal` to the child.
    func signal(_ signal: Int32) {
        process.signal(signal)
    }

    /// Waits (polling, bounded) until the process has exited and returns how it ended.
    @discardableResult
    func waitForExit(within limit: Duration = .seconds(30)) async throws -> ChildExit {
        do {
            return try await process.waitForExit(within: limit)
        } catch {
            throw ChildNodeError("\(name) still running after \(limit); log:\n\(log)")
        }
    }

    private var exitStatus: ChildExit? { process.exitStatus }
}

/// Parses swift-log's `StreamLogHandler` lines: `<time> <level> <label>: key=value key=value [Module] message`.
enum LogLine {
    /// The `key=value` metadata of a line (values hold no spaces in the lines the tests read).
    static func metadata(_ line: Substring) -> [String: String] {
        var result: [String: String] = [:]
        for token in line.split(separator: " ") {
            guard let equals = token.firstIndex(of: "=") else { continue }
            result[String(token[..<equals])] = String(token[token.index(after: equals)...])
        }
        return result
    }
}

import CofferTestKit
import Foundation
import NIOCore
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Why a child node could not be used.
struct ChildNodeError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// How a child process ended.
enum ChildExit: Equatable, CustomStringConvertible {
    case exited(Int32)
    case signaled(Int32)

    var description: String {
        switch self {
        case .exited(let status): "exit status \(status)"
        case .signaled(let signal): "killed by signal \(signal)"
        }
    }
}

/// One run of the real `coffer serve` binary as a child process, on `127.0.0.1:0` (the OS picks the port, read back
/// from the "listening" log line) over a data directory that outlives it. Its standard error goes to a log file of
/// its own, so the test can read what it logged (the port, the recovery summary) and keep it for a post-mortem.
final class ChildNode: @unchecked Sendable {
    let process: Process
    let logPath: String
    let dataDirectory: String
    private let portCache = Mutex<Int?>(nil)

    /// Starts `coffer serve` on `dataDirectory`, logging to `logPath`; returns at once (see `waitUntilReady`).
    init(dataDirectory: String, logPath: String, extraArguments: [String] = []) throws {
        self.logPath = logPath
        self.dataDirectory = dataDirectory
        guard FileManager.default.createFile(atPath: logPath, contents: nil),
            let log = FileHandle(forWritingAtPath: logPath)
        else { throw ChildNodeError("cannot create \(logPath)") }
        defer { try? log.close() }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try CofferBinary.path())
        process.arguments = ["serve", "--listen", "127.0.0.1:0", "--dir", dataDirectory] + extraArguments
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        process.standardError = log
        try process.run()
        self.process = process
    }

    deinit {
        // A test that failed half-way must not leave a node running.
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }

    var pid: pid_t { process.processIdentifier }
    var isRunning: Bool { process.isRunning }

    /// Everything the node logged so far.
    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// The port the node listens on, once it logged it.
    var port: Int? {
        if let known = portCache.withLock({ $0 }) { return known }
        guard let line = log.split(separator: "\n").first(where: { $0.contains("listening") }),
            let value = LogLine.metadata(line)["address"], let colon = value.lastIndex(of: ":"),
            let port = Int(value[value.index(after: colon)...])
        else { return nil }
        portCache.withLock { $0 = port }
        return port
    }

    /// The metadata of the engine's "recovery done" line (`segments`, `records`, `blobs`, `bytes.cut`,
    /// `orphans.removed`, `ms`, …), once logged.
    var recoverySummary: [String: String]? {
        log.split(separator: "\n").first(where: { $0.hasSuffix("recovery done") }).map(LogLine.metadata)
    }

    /// Waits until the node logged its port and answers `GET /health` with 200; fails early if it exits.
    func waitUntilReady(within limit: Duration = .seconds(30)) async throws {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            guard isRunning else {
                throw ChildNodeError("coffer exited before it was ready (\(exitStatus)); log:\n\(log)")
            }
            if let port, await Self.healthy(port: port) { return }
            try await Task.sleep(for: .milliseconds(5))
        }
        throw ChildNodeError("coffer not ready within \(limit); log:\n\(log)")
    }

    /// Whether `GET /health` on `port` answers 200 right now.
    static func healthy(port: Int) async -> Bool {
        guard let client = try? await HTTPTestClient.connect(port: port, timeout: .seconds(5)) else { return false }
        defer { client.close() }
        return (try? await client.send(.GET, "/health").status) == 200
    }

    /// A keep-alive client on a new connection to the node.
    func client(timeout: TimeAmount = .seconds(30)) async throws -> HTTPTestClient {
        guard let port else { throw ChildNodeError("the node has no port yet") }
        return try await HTTPTestClient.connect(port: port, timeout: timeout)
    }

    /// A raw connection to the node.
    func raw(timeout: TimeAmount = .seconds(30)) async throws -> RawConnection {
        guard let port else { throw ChildNodeError("the node has no port yet") }
        return try await RawConnection.connect(port: port, timeout: timeout)
    }

    /// Sends `signal` to the node.
    func signal(_ signal: Int32) {
        kill(pid, signal)
    }

    /// SIGKILL, then waits for the process to be gone (so its directory lock is released).
    func killHard() async throws {
        signal(SIGKILL)
        let exit = try await waitForExit()
        guard exit == .signaled(SIGKILL) else { throw ChildNodeError("after SIGKILL: \(exit)") }
    }

    /// Waits (polling) until the process has exited and returns how it ended.
    @discardableResult
    func waitForExit(within limit: Duration = .seconds(30)) async throws -> ChildExit {
        let deadline = ContinuousClock.now + limit
        while process.isRunning {
            guard ContinuousClock.now < deadline else {
                throw ChildNodeError("coffer still running after \(limit); log:\n\(log)")
            }
            try await Task.sleep(for: .milliseconds(2))
        }
        return exitStatus
    }

    private var exitStatus: ChildExit {
        process.terminationReason == .uncaughtSignal
            ? .signaled(process.terminationStatus) : .exited(process.terminationStatus)
    }
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

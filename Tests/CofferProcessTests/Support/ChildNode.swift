import CofferTestKit
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// One run of the real `coffer serve` binary as a child process, on `127.0.0.1:0`, over a data directory that
/// outlives it. The test reads what it logged (the port, the recovery summary).
final class ChildNode: CofferChild, @unchecked Sendable {
    let dataDirectory: String

    /// Starts `coffer serve` on `dataDirectory`, logging to `logPath`; returns at once (see `waitUntilReady`).
    init(dataDirectory: String, logPath: String, extraArguments: [String] = [], launcher: [String] = []) throws {
        self.dataDirectory = dataDirectory
        try super.init(
            command: ["serve", "--listen", "127.0.0.1:0", "--dir", dataDirectory] + extraArguments, logPath: logPath,
            launcher: launcher)
    }

    /// The metadata of the engine's "recovery done" line (`segments`, `records`, `blobs`, `bytes.cut`,
    /// `orphans.removed`, `ms`, …), once logged.
    var recoverySummary: [String: String]? {
        log.split(separator: "\n").first(where: { $0.hasSuffix("recovery done") }).map(LogLine.metadata)
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

    /// SIGKILL, then waits for the process to be gone (so its directory lock is released).
    func killHard() async throws {
        signal(SIGKILL)
        let exit = try await waitForExit()
        guard exit == .signaled(SIGKILL) else { throw ChildNodeError("after SIGKILL: \(exit)") }
    }
}

import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The fileserver challenge's backends: `count` processes of `Tests/Fixtures/challenge-fileserver.py` (a double of the
/// challenge's file server with all of its habits: 333 ms a request, 429 past 15 in flight, per-process name caches and
/// locks, truncate-then-write PUTs, 200 with the error text when an open fails, chunked GETs) on loopback, sharing
/// one directory as their volume. Each is a ``ChildProcess`` that also exits by itself when the test process dies.
public final class ChallengeFileservers: Sendable {
    /// The shared volume.
    public let directory: String
    public let ports: [Int]
    private let children: [ChildProcess]

    private init(directory: String, ports: [Int], children: [ChildProcess]) {
        self.directory = directory
        self.ports = ports
        self.children = children
    }

    /// The double's source, found from this file's place in the repository.
    public static var script: String {
        let file = #filePath
        let tests = file[..<file.range(of: "/CofferTestKit/", options: .backwards)!.lowerBound]
        return tests + "/Fixtures/challenge-fileserver.py"
    }

    /// Starts `count` servers on one new temporary directory and waits until each has bound its port.
    ///
    /// - Errors: ``ChildProcess/Failure`` when python3 is missing or a server does not start within 30 s.
    public static func start(
        count: Int = 5,
        latencyMilliseconds: Int = 333,
        maxInFlight: Int = 15
    ) async throws -> ChallengeFileservers {
        var template = Array("/tmp/coffer-fileservers-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw ChildProcess.Failure("mkdtemp failed: errno \(errno)") }
        let directory = String(cString: made)
        var children: [ChildProcess] = []
        var ports: [Int] = []
        do {
            for index in 0..<count {
                let child = try ChildProcess(
                    "python3",
                    [
                        script, "--port", "0", "--dir", directory + "/volume", "--latency-ms", "\(latencyMilliseconds)",
                        "--max-in-flight", "\(maxInFlight)", "--parent-pid", "\(getpid())",
                    ],
                    logPath: directory + "/server-\(index).log")
                children.append(child)
            }
            for child in children {
                var port: Int?
                try await child.waitUntil(within: .seconds(30), "listening") {
                    port = Self.port(in: child.log)
                    return port != nil
                }
                ports.append(port!)
            }
        } catch {
            for child in children { await child.kill() }
            throw error
        }
        return ChallengeFileservers(directory: directory, ports: ports, children: children)
    }

    /// `http://127.0.0.1:PORT/api/fileserver` for each server: the gateway's `--backend` URLs.
    public var backendURLs: [String] { ports.map { "http://127.0.0.1:\($0)/api/fileserver" } }

    /// The path of `name` on the shared volume.
    public func path(of name: String) -> String { directory + "/volume/" + name }

    /// Kills the servers (SIGKILL, reaped) and removes the volume.
    public func stop() async {
        for child in children { await child.kill() }
        try? FileManager.default.removeItem(atPath: directory)
    }

    private static func port(in log: String) -> Int? {
        guard let line = log.split(separator: "\n").first(where: { $0.hasPrefix("listening on ") }),
            let colon = line.lastIndex(of: ":")
        else { return nil }
        return Int(line[line.index(after: colon)...])
    }
}

import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// How a child process ended.
public enum ChildExit: Equatable, Sendable, CustomStringConvertible {
    case exited(Int32)
    case signaled(Int32)

    public var description: String {
        switch self {
        case .exited(let status): "exit status \(status)"
        case .signaled(let signal): "killed by signal \(signal)"
        }
    }
}

/// A program run as a child of the test process with `posix_spawn`, its standard output and error in a log file of
/// its own, reaped with `waitpid` by this object alone. Every wait has a deadline, so no test can hang or spin on a
/// child that never ends or that something else already reaped. Killed (SIGKILL) and reaped by ``kill(within:)``, and
/// by `deinit` if the test forgot.
public final class ChildProcess: @unchecked Sendable {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        public init(_ description: String) { self.description = description }
    }

    public let pid: pid_t
    public let logPath: String
    /// Names the child in messages.
    public let name: String
    private let ended = Mutex<ChildExit?>(nil)

    /// Starts `executable` (a path, or a name looked up in `PATH`) with `arguments`, standard input from
    /// `/dev/null`, standard output appended to `logPath` and standard error to `errorPath` (default: the same file),
    /// with this process's environment plus `environment`.
    ///
    /// - Errors: ``Failure`` when the program cannot be started.
    public init(
        _ executable: String, _ arguments: [String], logPath: String, errorPath: String? = nil,
        environment: [String: String] = [:]
    ) throws {
        self.logPath = logPath
        self.name = ([executable] + arguments.prefix(2)).joined(separator: " ")
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, logPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        if let errorPath {
            posix_spawn_file_actions_addopen(&actions, 2, errorPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        } else {
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        }
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var variables: [String: String] = [:]
        var entry = environ
        while let pointer = entry.pointee {
            let text = String(cString: pointer)
            if let equals = text.firstIndex(of: "=") {
                variables[String(text[..<equals])] = String(text[text.index(after: equals)...])
            }
            entry += 1
        }
        variables.merge(environment) { $1 }
        let envp = variables.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for pointer in envp { free(pointer) } }
        var child: pid_t = 0
        let result = posix_spawnp(&child, executable, &actions, nil, argv, envp)
        guard result == 0 else { throw Failure("cannot start \(executable): \(String(cString: strerror(result)))") }
        self.pid = child
    }

    deinit {
        if exitStatus == nil {
            Glibc.kill(pid, SIGKILL)
            var status: Int32 = 0
            _ = waitpid(pid, &status, 0)
        }
    }

    /// How the child ended, or `nil` while it runs (reaps it when it has ended; never blocks).
    public var exitStatus: ChildExit? {
        ended.withLock { ended in
            if let ended { return ended }
            var status: Int32 = 0
            let result = waitpid(pid, &status, WNOHANG)
            guard result == pid else { return nil }
            let exit: ChildExit =
                (status & 0x7f) == 0 ? .exited((status >> 8) & 0xff) : .signaled(status & 0x7f)
            ended = exit
            return exit
        }
    }

    public var isRunning: Bool { exitStatus == nil }

    /// Everything the child wrote so far.
    public var log: String {
        guard let file = fopen(logPath, "r") else { return "" }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = fread(&buffer, 1, buffer.count, file)
            if count <= 0 { break }
            bytes += buffer[0..<count]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Sends `signal` unless the child has ended.
    public func signal(_ signal: Int32) {
        if isRunning { Glibc.kill(pid, signal) }
    }

    /// Waits until the child has ended, polling; throws after `limit`.
    @discardableResult
    public func waitForExit(within limit: Duration = .seconds(30)) async throws -> ChildExit {
        let deadline = ContinuousClock.now + limit
        while true {
            if let exit = exitStatus { return exit }
            guard ContinuousClock.now < deadline else {
                throw Failure("\(name) (pid \(pid)) still running after \(limit); log:\n\(log.suffix(4000))")
            }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    /// SIGKILL, then waits (with a deadline) until it is reaped.
    public func kill(within limit: Duration = .seconds(10)) async {
        signal(SIGKILL)
        _ = try? await waitForExit(within: limit)
    }

    /// SIGTERM, then SIGKILL if it has not ended within `grace`.
    public func stop(grace: Duration = .seconds(10)) async {
        signal(SIGTERM)
        if (try? await waitForExit(within: grace)) == nil { await kill() }
    }

    /// Waits until `ready()` holds, failing early (with the log) if the child ends first, or after `limit`.
    public func waitUntil(
        within limit: Duration,
        _ what: String,
        _ ready: () async -> Bool
    ) async throws {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            if let exit = exitStatus {
                throw Failure("\(name) ended (\(exit)) before \(what); log:\n\(log.suffix(4000))")
            }
            if await ready() { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw Failure("\(name): not \(what) within \(limit); log:\n\(log.suffix(4000))")
    }
}

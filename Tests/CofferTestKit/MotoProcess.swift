import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A real S3 server for tests: moto's standalone server (`python3 -m moto.server -H 127.0.0.1 -p PORT`, its own
/// `__main__`) as a ``ChildProcess`` on a free loopback port, reaped with `waitpid` and every wait bounded. State lives
/// in the process's memory, so a ``restart(readyWithin:)`` comes back empty. Besides being killed by ``kill()``,
/// ``stop()`` and `deinit`, the server exits by itself when the test process is gone (a watchdog thread).
///
/// When python3 or moto is missing the start fails (never skips) with a message that says how to install it.
public final class MotoProcess: Sendable {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        init(_ description: String) { self.description = description }
    }

    /// The loopback port moto listens on; the same across restarts.
    public let port: Int
    public let logPath: String
    private let child = Mutex<ChildProcess?>(nil)

    public static let installHint = "install it with: pip install 'moto[server]' (scripts/install-test-deps.sh)"

    /// moto.server's own `__main__`, after starting a thread that ends the process when its parent is gone.
    private static let launcher = """
        import os, runpy, sys, threading, time
        parent = int(sys.argv.pop(1))  # the test process, named by itself: it may be gone before this line runs
        def watch():
            while os.getppid() == parent:
                time.sleep(0.5)
            os._exit(0)
        threading.Thread(target=watch, daemon=True).start()
        sys.argv = ["moto.server"] + sys.argv[1:]
        runpy.run_module("moto.server", run_name="__main__", alter_sys=True)
        """

    private init(port: Int, logPath: String) {
        self.port = port
        self.logPath = logPath
    }

    /// Starts moto on a free port, logging to `directory/moto-PORT.log`, and waits until it answers HTTP. A port taken
    /// between the probe and moto's bind is retried with another.
    ///
    /// - Errors: ``Failure`` naming the install command when python3 or moto is missing, or when it does not answer
    ///   within `limit`.
    public static func start(
        logDirectory directory: String = NSTemporaryDirectory(),
        readyWithin limit: Duration = .seconds(90)
    ) async throws -> MotoProcess {
        var lastError: (any Error)?
        for _ in 0..<5 {
            let port = try LoopbackPort.free()
            let moto = MotoProcess(
                port: port, logPath: directory + "/moto-\(port)-\(UInt32.random(in: 0...UInt32.max)).log")
            do {
                try await moto.launch(readyWithin: limit)
                return moto
            } catch let error as Failure where moto.log.contains("Address already in use") {
                lastError = error
                await moto.kill()
            } catch {
                await moto.kill()
                throw error
            }
        }
        throw lastError ?? Failure("moto could not start")
    }

    /// Starts `count` servers at once (moto takes a second or two to import), sorted by port.
    public static func startMany(
        _ count: Int, logDirectory: String = NSTemporaryDirectory()
    ) async throws
        -> [MotoProcess]
    {
        try await withThrowingTaskGroup(of: MotoProcess.self) { group in
            for _ in 0..<count { group.addTask { try await start(logDirectory: logDirectory) } }
            var motos: [MotoProcess] = []
            for try await moto in group { motos.append(moto) }
            return motos.sorted { $0.port < $1.port }
        }
    }

    public var isRunning: Bool { child.withLock { $0?.isRunning ?? false } }

    /// The process id of the running server, if any.
    public var pid: pid_t? { child.withLock { $0?.pid } }

    /// Everything moto logged (requests and errors), for failure messages.
    public var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// `http://127.0.0.1:PORT`.
    public var baseURL: String { "http://127.0.0.1:\(port)" }

    /// SIGKILL, then waits (bounded) until the process is reaped. Requests fail at once afterwards.
    public func kill() async {
        await child.withLock { $0 }?.kill()
    }

    /// SIGTERM, then SIGKILL if it has not exited within 10 s.
    public func stop() async {
        await child.withLock { $0 }?.stop()
    }

    /// Starts a new process on the same port (after killing the old one): an empty server at the same address, as a
    /// node that came back without its data.
    public func restart(readyWithin limit: Duration = .seconds(90)) async throws {
        await kill()
        try await launch(readyWithin: limit)
    }

    private func launch(readyWithin limit: Duration) async throws {
        let process: ChildProcess
        do {
            process = try ChildProcess(
                "python3", ["-c", Self.launcher, "\(getpid())", "-H", "127.0.0.1", "-p", String(port)],
                logPath: logPath)
        } catch {
            throw Failure("cannot run python3 (\(error)); moto's server needs python3 with moto: \(Self.installHint)")
        }
        child.withLock { $0 = process }
        do {
            try await process.waitUntil(within: limit, "answering on port \(port)") { await answers() }
        } catch {
            let log = self.log
            if log.contains("No module named") {
                throw Failure("moto's server is not available to python3: \(Self.installHint)\n\(log)")
            }
            throw Failure("moto did not start: \(error)")
        }
    }

    /// Whether moto answers an HTTP request right now.
    private func answers() async -> Bool {
        guard let client = try? await HTTPTestClient.connect(port: port, timeout: .seconds(5)) else { return false }
        defer { client.close() }
        return (try? await client.send(.GET, "/")) != nil
    }
}

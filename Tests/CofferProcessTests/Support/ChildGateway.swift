import CofferTestKit
import Foundation
import NIOCore
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// One run of the real `coffer gateway` binary as a child process (normally on `--listen 127.0.0.1:0`).
final class ChildGateway: CofferChild, @unchecked Sendable {
    /// Starts `coffer gateway ARGUMENTS`, logging to `logPath`; returns at once (see ``waitUntilReady(within:)``).
    init(arguments: [String], logPath: String) throws {
        try super.init(command: ["gateway"] + arguments, logPath: logPath)
    }

    /// SIGKILL (if still running), then waits for the process to be gone.
    func stop() async {
        if isRunning { signal(SIGKILL) }
        _ = try? await waitForExit()
    }

    /// The gateway's peak resident set size (`VmHWM` in /proc/PID/status), in bytes.
    var peakResidentBytes: Int? { Self.status(pid, field: "VmHWM:") }

    /// The gateway's resident set size now (`VmRSS`), in bytes.
    var residentBytes: Int? { Self.status(pid, field: "VmRSS:") }

    static func status(_ pid: pid_t, field: String) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix(field) }),
            let kib = line.split(separator: " ").dropFirst().first.flatMap({ Int($0) })
        else { return nil }
        return kib * 1024
    }
}

/// A real S3 server for the gateway's process tests: `python3 -m moto.server -H 127.0.0.1 -p PORT` (moto's own
/// `__main__`, started through a tiny launcher that also ends the server when the test process is gone), on a free
/// loopback port. Killed by ``stop()`` and by `deinit`. When python3 or moto is missing, the start fails (it never
/// skips) with a message that says how to install it.
final class ChildMoto: @unchecked Sendable {
    let port: Int
    let logPath: String
    let process: Process

    static let installHint = "install it with: pip install 'moto[server]'"

    private static let launcher = """
        import os, runpy, sys, threading, time
        parent = os.getppid()
        def watch():
            while os.getppid() == parent:
                time.sleep(0.5)
            os._exit(0)
        threading.Thread(target=watch, daemon=True).start()
        sys.argv = ["moto.server"] + sys.argv[1:]
        runpy.run_module("moto.server", run_name="__main__", alter_sys=True)
        """

    private init(port: Int, logPath: String) throws {
        self.port = port
        self.logPath = logPath
        guard FileManager.default.createFile(atPath: logPath, contents: nil),
            let log = FileHandle(forWritingAtPath: logPath)
        else { throw ChildNodeError("cannot create \(logPath)") }
        defer { try? log.close() }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", Self.launcher, "-H", "127.0.0.1", "-p", String(port)]
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = log
        process.standardError = log
        do {
            try process.run()
        } catch {
            throw ChildNodeError("cannot run python3 (\(error)); the gateway tests need moto: \(Self.installHint)")
        }
        self.process = process
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// The `--backend` URL of this server's `coffer` bucket (moto accepts any credentials).
    var backendURL: String { "s3://test:test@127.0.0.1:\(port)/coffer" }

    /// Starts moto on a free port (logging to `directory/moto-PORT.log`) and waits until it answers HTTP.
    static func start(logDirectory directory: String) async throws -> ChildMoto {
        var lastError: (any Error)?
        for _ in 0..<5 {
            let port = try LoopbackPort.free()
            let moto = try ChildMoto(port: port, logPath: directory + "/moto-\(port).log")
            do {
                try await moto.waitUntilReady()
                return moto
            } catch  where moto.log.contains("Address already in use") {
                lastError = error  // the port was taken between the probe and moto's bind: try another
                await moto.stop()
            } catch {
                await moto.stop()
                throw error
            }
        }
        throw lastError ?? ChildNodeError("moto could not start")
    }

    /// Starts `count` servers at once (moto takes a second or two to import).
    static func startMany(_ count: Int, logDirectory: String) async throws -> [ChildMoto] {
        try await withThrowingTaskGroup(of: ChildMoto.self) { group in
            for _ in 0..<count { group.addTask { try await start(logDirectory: logDirectory) } }
            var motos: [ChildMoto] = []
            for try await moto in group { motos.append(moto) }
            return motos.sorted { $0.port < $1.port }
        }
    }

    private func waitUntilReady(within limit: Duration = .seconds(90)) async throws {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            guard process.isRunning else {
                let log = self.log
                if log.contains("No module named") || log.contains("not found") {
                    throw ChildNodeError("moto's server is not available to python3: \(Self.installHint)\n\(log)")
                }
                throw ChildNodeError("moto exited before it answered (\(Self.installHint)):\n\(log)")
            }
            if let client = try? await HTTPTestClient.connect(port: port, timeout: .seconds(5)) {
                defer { client.close() }
                if (try? await client.send(.GET, "/")) != nil { return }
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw ChildNodeError("moto did not answer on port \(port) within \(limit):\n\(log)")
    }

    /// SIGKILL, then waits until the process is gone.
    func stop() async {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        let deadline = ContinuousClock.now + .seconds(10)
        while process.isRunning, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(10)) }
    }
}

/// Motos and a `coffer gateway` over them, with their logs in one test directory. Whatever happens, ``finish()``
/// kills them all and removes the directory.
final class GatewayRun: @unchecked Sendable {
    let directory: ProcessTestDirectory
    private(set) var motos: [ChildMoto] = []
    private(set) var gateways: [ChildGateway] = []

    init() throws { directory = try ProcessTestDirectory() }

    /// Starts `count` motos at once.
    func startMotos(_ count: Int) async throws -> [ChildMoto] {
        let started = try await ChildMoto.startMany(count, logDirectory: directory.path)
        motos += started
        return started
    }

    /// Starts `coffer gateway ARGUMENTS` (logging to `gateway-N.log`) without waiting for it.
    func launchGateway(_ arguments: [String]) throws -> ChildGateway {
        let gateway = try ChildGateway(
            arguments: arguments, logPath: directory.path + "/gateway-\(gateways.count + 1).log")
        gateways.append(gateway)
        return gateway
    }

    /// Starts a gateway on `127.0.0.1:0` over `motos` and waits until it answers `/health`.
    func startGateway(over motos: [ChildMoto], extraArguments: [String] = []) async throws -> ChildGateway {
        let arguments = ["--listen", "127.0.0.1:0"] + motos.flatMap { ["--backend", $0.backendURL] } + extraArguments
        let gateway = try launchGateway(arguments)
        try await gateway.waitUntilReady()
        return gateway
    }

    func finish() async {
        for gateway in gateways { await gateway.stop() }
        for moto in motos { await moto.stop() }
        directory.remove()
    }
}

/// Runs `body` with a ``GatewayRun``, cleaning up after it whether it throws or not.
func withGatewayRun(_ body: (GatewayRun) async throws -> Void) async throws {
    let run = try GatewayRun()
    do {
        try await body(run)
    } catch {
        await run.finish()
        throw error
    }
    await run.finish()
}

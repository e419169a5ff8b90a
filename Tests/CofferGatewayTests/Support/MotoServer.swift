import AsyncHTTPClient
import CofferGateway
import CofferTestKit
import Foundation
import NIOCore
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Why a moto server could not be used.
struct MotoServerError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A real S3 server for tests: moto's standalone server (`python3 -m moto.server -H 127.0.0.1 -p PORT`) as a child
/// process on a free loopback port. State lives in the process's memory, so a ``restart()`` comes back empty.
///
/// The process is killed by ``kill()`` / ``stop()``, by ``withServer(_:)`` when its body ends, by `deinit`, and, if the
/// test process itself dies, by a watchdog thread inside the Python process that exits when its parent is gone.
/// When moto is missing the start fails (never skips) with a message that says how to install it.
final class MotoServer: @unchecked Sendable {
    /// The loopback port moto listens on; the same across ``restart()``.
    let port: Int
    let logPath: String
    private let process = Mutex<Process?>(nil)

    static let installHint = "install it with: pip install 'moto[server]'"

    /// The module run is moto.server's own `__main__` (exactly `python3 -m moto.server ARGS`), after starting a thread
    /// that ends the process when the test process that started it is gone.
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

    private init(port: Int, logPath: String) {
        self.port = port
        self.logPath = logPath
    }

    deinit {
        // A test that failed half-way must not leave a server running.
        if let process = process.withLock({ $0 }), process.isRunning { Glibc.kill(process.processIdentifier, SIGKILL) }
    }

    /// Starts moto on a free port and waits until it answers HTTP.
    ///
    /// - Errors: ``MotoServerError`` naming `pip install 'moto[server]'` when python3 or moto is missing.
    static func start(readyWithin limit: Duration = .seconds(90)) async throws -> MotoServer {
        var lastError: (any Error)?
        for _ in 0..<5 {
            let port = try LoopbackPort.free()
            let logPath = NSTemporaryDirectory() + "moto-\(port)-\(UUID().uuidString.prefix(8)).log"
            let server = MotoServer(port: port, logPath: logPath)
            do {
                try await server.launch(readyWithin: limit)
                return server
            } catch let error as MotoServerError where server.log.contains("Address already in use") {
                lastError = error  // another process took the port between our probe and moto's bind: pick another
            }
        }
        throw lastError ?? MotoServerError("moto could not start")
    }

    /// Runs `body` with a fresh server and kills the server afterwards, also when `body` throws (then its log is kept
    /// for a post-mortem).
    static func withServer<T>(_ body: (MotoServer) async throws -> T) async throws -> T {
        let server = try await start()
        do {
            let result = try await body(server)
            await server.kill()
            try? FileManager.default.removeItem(atPath: server.logPath)  // kept only when the test failed
            return result
        } catch {
            await server.kill()
            throw error
        }
    }

    /// Starts `count` servers at once (they start in parallel: moto takes a few seconds to import).
    static func startMany(_ count: Int) async throws -> [MotoServer] {
        try await withThrowingTaskGroup(of: MotoServer.self) { group in
            for _ in 0..<count { group.addTask { try await start() } }
            var servers: [MotoServer] = []
            for try await server in group { servers.append(server) }
            return servers.sorted { $0.port < $1.port }
        }
    }

    var isRunning: Bool { process.withLock { $0?.isRunning ?? false } }

    /// The process id of the running server, if any.
    var pid: pid_t? { process.withLock { $0.map(\.processIdentifier) } }

    /// Everything moto logged (requests and errors), for failure messages.
    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// `http://127.0.0.1:PORT`.
    var baseURL: String { "http://127.0.0.1:\(port)" }

    /// An S3 endpoint on this server. moto accepts any credentials until ``enableAuthentication()``.
    func endpoint(
        bucket: String = "coffer", accessKey: String = "testing", secretKey: String = "testing"
    )
        -> S3Endpoint
    {
        S3Endpoint(host: "127.0.0.1", port: port, bucket: bucket, accessKey: accessKey, secretKey: secretKey)
    }

    /// SIGKILL, then waits until the process is gone. Requests fail at once afterwards (connection refused).
    func kill() async {
        await terminate(signal: SIGKILL)
    }

    /// SIGTERM, then SIGKILL if it has not exited within 10 s.
    func stop() async {
        await terminate(signal: SIGTERM)
    }

    /// Starts a new process on the same port (after killing the old one if still running): an empty server at the
    /// same address, as a node that came back without its data.
    func restart(readyWithin limit: Duration = .seconds(90)) async throws {
        await kill()
        try await launch(readyWithin: limit)
    }

    private func launch(readyWithin limit: Duration) async throws {
        guard FileManager.default.createFile(atPath: logPath, contents: nil),
            let logHandle = FileHandle(forWritingAtPath: logPath)
        else { throw MotoServerError("cannot create \(logPath)") }
        defer { try? logHandle.close() }
        logHandle.seekToEndOfFile()
        let child = Process()
        child.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        child.arguments = ["python3", "-c", Self.launcher, "-H", "127.0.0.1", "-p", String(port)]
        child.standardInput = FileHandle.nullDevice
        child.standardOutput = logHandle
        child.standardError = logHandle
        do {
            try child.run()
        } catch {
            throw MotoServerError(
                "cannot run python3 (\(error)); moto's server needs python3 with moto, \(Self.installHint)")
        }
        process.withLock { $0 = child }
        try await waitUntilReady(child, within: limit)
    }

    private func waitUntilReady(_ child: Process, within limit: Duration) async throws {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            guard child.isRunning else {
                let log = self.log
                if log.contains("No module named") || log.contains("No such file or directory")
                    || log.contains("not found")
                {
                    throw MotoServerError("moto's server is not available to python3: \(Self.installHint)\n\(log)")
                }
                throw MotoServerError("moto exited (status \(child.terminationStatus)) before it answered:\n\(log)")
            }
            if await answers() { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        Glibc.kill(child.processIdentifier, SIGKILL)
        throw MotoServerError("moto did not answer on port \(port) within \(limit):\n\(log)")
    }

    /// Whether moto answers an HTTP request right now.
    private func answers() async -> Bool {
        var request = HTTPClientRequest(url: baseURL + "/moto-api/reset-auth")
        request.method = .GET
        guard let response = try? await HTTPClient.shared.execute(request, timeout: .seconds(2)) else { return false }
        _ = try? await response.body.collect(upTo: 16 << 20)
        return true
    }

    private func terminate(signal: Int32) async {
        guard let child = process.withLock({ $0 }) else { return }
        if child.isRunning { Glibc.kill(child.processIdentifier, signal) }
        let deadline = ContinuousClock.now + .seconds(10)
        while child.isRunning {
            if ContinuousClock.now > deadline {
                Glibc.kill(child.processIdentifier, SIGKILL)
            }
            try? await Task.sleep(for: .milliseconds(10))
        }
    }
}

extension MotoServer {
    /// Creates an IAM user allowed `s3:*` with a fresh access key, then switches on moto's request authentication
    /// (`POST /moto-api/reset-auth` with 0): from then on every request must carry a valid SigV4 signature of that
    /// key, checked by moto with botocore's signer, or is refused (`SignatureDoesNotMatch`, `InvalidAccessKeyId`).
    func enableAuthentication(userName: String = "coffer") async throws -> (accessKey: String, secretKey: String) {
        _ = try await iam(["Action": "CreateUser", "UserName": userName])
        let created = try await iam(["Action": "CreateAccessKey", "UserName": userName])
        guard let accessKey = Self.element("AccessKeyId", in: created),
            let secretKey = Self.element("SecretAccessKey", in: created)
        else { throw MotoServerError("CreateAccessKey answered without a key:\n\(created)") }
        let policy = #"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#
        _ = try await iam(
            ["Action": "PutUserPolicy", "UserName": userName, "PolicyName": "s3-all", "PolicyDocument": policy])

        var request = HTTPClientRequest(url: baseURL + "/moto-api/reset-auth")
        request.method = .POST
        request.body = .bytes(ByteBuffer(string: "0"))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        let body = try await response.body.collect(upTo: 1 << 20)
        guard response.status == .ok else {
            throw MotoServerError("reset-auth answered \(response.status): \(String(buffer: body))")
        }
        return (accessKey, secretKey)
    }

    /// One IAM query-API call (form-encoded POST, signed for service `iam`); returns the XML answer.
    private func iam(_ parameters: [String: String]) async throws -> String {
        var form = parameters
        form["Version"] = "2010-05-08"
        let body = form.sorted { $0.key < $1.key }
            .map { SigV4Signer.uriEncode($0.key) + "=" + SigV4Signer.uriEncode($0.value) }
            .joined(separator: "&")
        let host = "127.0.0.1:\(port)"
        let headers = [
            (name: "host", value: host), (name: "content-type", value: "application/x-www-form-urlencoded"),
        ]
        let signer = SigV4Signer(accessKey: "AKIAIOSFODNN7EXAMPLE", secretKey: "testing", service: "iam")
        let signature = signer.sign(
            SigV4Signer.Request(
                method: "POST", path: "/", headers: headers, payloadHash: SigV4Signer.payloadHash(Array(body.utf8))),
            date: Date()
        )
        var request = HTTPClientRequest(url: baseURL + "/")
        request.method = .POST
        for header in headers + signature.headersToAdd { request.headers.add(name: header.name, value: header.value) }
        request.body = .bytes(ByteBuffer(string: body))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        let text = String(buffer: try await response.body.collect(upTo: 1 << 20))
        guard response.status == .ok else {
            throw MotoServerError("IAM \(parameters["Action"] ?? "") answered \(response.status): \(text)")
        }
        return text
    }

    /// The text of the first `<name>…</name>` in `xml`.
    static func element(_ name: String, in xml: String) -> String? {
        guard let open = xml.range(of: "<\(name)>"), let close = xml.range(of: "</\(name)>"),
            open.upperBound <= close.lowerBound
        else { return nil }
        return String(xml[open.upperBound..<close.lowerBound])
    }
}

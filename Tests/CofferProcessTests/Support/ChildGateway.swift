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
}

/// A real S3 server for the gateway's process tests: the test kit's ``MotoProcess``.
typealias ChildMoto = MotoProcess

extension ChildMoto {
    /// The `--backend` URL of this server's `coffer` bucket (moto accepts any credentials).
    var backendURL: String { "s3://test:test@127.0.0.1:\(port)/coffer" }
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

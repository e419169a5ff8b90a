import AsyncHTTPClient
import CofferGateway
import CofferTestKit
import Foundation
import NIOCore
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Why the test Docker daemon could not be used.
struct DockerdError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A private Docker daemon for tests: Debian's `dockerd` as a child process with its own socket, data root and exec
/// root in a fresh directory under `/tmp`, plus an image imported from busybox-static (`/bin/busybox`, `/bin/sh`)
/// and a bridge network of its own (Docker picks a free private subnet), so containers get real IP addresses.
///
/// It runs with `--iptables=false --ip6tables=false --bridge=none`: it never touches the host's firewall or the
/// default `docker0` bridge. ``stop()`` removes every container and the network, stops the daemon (SIGTERM, then
/// SIGKILL after 30 s), kills what it left behind (containerd, shims: found by the temp directory in their command
/// line), unmounts what is still mounted under the directory and deletes it. If the test process dies first, a
/// watchdog shell sends the daemon SIGTERM (which stops its containers) within a second.
///
/// Needs root. When `dockerd`, the `docker` CLI or busybox-static is missing the start fails (never skips) and says
/// how to install them.
final class Dockerd: @unchecked Sendable {
    /// The daemon of the running ``DockerdTrait`` scope.
    @TaskLocal static var current: Dockerd?

    static let installHint = "install them with: apt-get install -y docker.io busybox-static"
    /// The image every test container runs: busybox only.
    static let image = "coffer-busybox:test"

    /// The temp directory holding everything (socket, data root, exec root, logs).
    let directory: String
    /// A bridge network created for these tests.
    let network: String
    let dockerCLI: String
    private let daemon: ChildProcess
    private let watchdogProcess: ChildProcess

    var socketPath: String { directory + "/docker.sock" }
    var logPath: String { directory + "/dockerd.log" }
    /// The daemon's log, for failure messages.
    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Once the test process (`$1`) is gone: stops the daemon (`$2`: SIGTERM, SIGKILL after 30 s), deletes the
    /// test network's bridge (named in `$3/bridge`) and the directory `$3`. It only waits in foreground commands: a
    /// child may inherit a blocked SIGCHLD from the thread that spawned it, which breaks the shell's `wait`.
    private static let watchdog = """
        parent=$1; daemon=$2; dir=$3
        while kill -0 "$parent" 2>/dev/null; do sleep 1; done
        kill -TERM "$daemon" 2>/dev/null
        i=0
        while kill -0 "$daemon" 2>/dev/null && [ "$i" -lt 30 ]; do sleep 1; i=$((i+1)); done
        kill -0 "$daemon" 2>/dev/null && kill -KILL "$daemon" 2>/dev/null && sleep 1
        [ -s "$dir/bridge" ] && ip link delete "$(cat "$dir/bridge")" 2>/dev/null
        rm -rf "$dir" 2>/dev/null
        """

    private init(
        directory: String, network: String, dockerCLI: String, daemon: ChildProcess, watchdog: ChildProcess
    ) {
        self.directory = directory
        self.network = network
        self.dockerCLI = dockerCLI
        self.daemon = daemon
        self.watchdogProcess = watchdog
    }

    /// Starts a daemon, waits until `/_ping` answers (up to `limit`), imports ``image`` and creates ``network``.
    ///
    /// - Errors: ``DockerdError`` with the daemon's log when it does not come up, or the install hint.
    static func start(readyWithin limit: Duration = .seconds(60)) async throws -> Dockerd {
        guard getuid() == 0 else { throw DockerdError("dockerd needs root") }
        guard let dockerd = executable("dockerd", preferring: "/usr/sbin/dockerd"),
            let dockerCLI = executable("docker", preferring: "/usr/bin/docker")
        else { throw DockerdError("dockerd or the docker CLI is missing; \(installHint)") }
        let busybox = "/bin/busybox"
        guard FileManager.default.isExecutableFile(atPath: busybox) else {
            throw DockerdError("\(busybox) is missing; \(installHint)")
        }

        var template = Array("/tmp/coffer-dockerd-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw DockerdError("mkdtemp: errno \(errno)") }
        let directory = String(cString: made)

        let process = try ChildProcess(
            dockerd,
            [
                "--host", "unix://\(directory)/docker.sock",
                "--data-root", "\(directory)/root",
                "--exec-root", "\(directory)/exec",
                "--pidfile", "\(directory)/pid",
                "--bridge=none", "--iptables=false", "--ip6tables=false",
            ],
            logPath: directory + "/dockerd.log")
        let watchdog = try ChildProcess(
            "/bin/sh",
            ["-c", Self.watchdog, "dockerd-watchdog", String(getpid()), String(process.pid), directory],
            logPath: "/dev/null")

        let network = "coffer-test-\(UUID().uuidString.prefix(8).lowercased())"
        let daemon = Dockerd(
            directory: directory, network: network, dockerCLI: dockerCLI, daemon: process, watchdog: watchdog)
        do {
            try await daemon.waitUntilReady(within: limit)
            try await daemon.importImage(busybox: busybox)
            let networkID = try await daemon.docker("network", "create", "--driver", "bridge", network)
            // Docker names a network's bridge `br-` + 12 hex digits of its id; the watchdog deletes it if need be.
            try Data("br-\(networkID.prefix(12))".utf8).write(to: URL(fileURLWithPath: directory + "/bridge"))
            return daemon
        } catch {
            let log = daemon.log.suffix(4000)
            await daemon.stop()
            throw DockerdError("\(error)\n--- dockerd log (end) ---\n\(log)")
        }
    }

    private static func executable(_ name: String, preferring preferred: String) -> String? {
        if FileManager.default.isExecutableFile(atPath: preferred) { return preferred }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin"
        return path.split(separator: ":").map { "\($0)/\(name)" }.first {
            FileManager.default.isExecutableFile(atPath: $0)
        }
    }

    private func waitUntilReady(within limit: Duration) async throws {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            guard daemon.isRunning else {
                throw DockerdError("dockerd exited (\(daemon.exitStatus.map(\.description) ?? "?")) before it answered")
            }
            if await pingAnswers() { return }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw DockerdError("dockerd did not answer /_ping on \(socketPath) within \(limit)")
    }

    /// Whether `GET /_ping` answers 200 right now (checked without the code under test).
    private func pingAnswers() async -> Bool {
        var request = HTTPClientRequest(url: "http+unix://\(DockerClient.percentEncode(socketPath))/_ping")
        request.headers.add(name: "host", value: "localhost")  // Go's server refuses requests without one
        guard let response = try? await HTTPClient.shared.execute(request, timeout: .seconds(2)) else { return false }
        _ = try? await response.body.collect(upTo: 1 << 20)
        return response.status == .ok
    }

    /// A root file system of `/bin/busybox` and `/bin/sh`, tarred and `docker import`ed as ``image``.
    private func importImage(busybox: String) async throws {
        let rootfs = directory + "/rootfs"
        try FileManager.default.createDirectory(atPath: rootfs + "/bin", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: rootfs + "/tmp", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: busybox, toPath: rootfs + "/bin/busybox")
        try FileManager.default.createSymbolicLink(atPath: rootfs + "/bin/sh", withDestinationPath: "busybox")
        let tar = try await Self.run(
            "/usr/bin/env", ["tar", "-C", rootfs, "-cf", directory + "/rootfs.tar", "."], outputIn: directory)
        guard tar.status == 0 else { throw DockerdError("tar failed: \(tar.stderr)") }
        try await docker("import", directory + "/rootfs.tar", Self.image)
    }

    // MARK: - Containers

    /// `docker ARGS` against this daemon; the trimmed standard output.
    ///
    /// - Errors: ``DockerdError`` with the CLI's stderr when it exits non-zero.
    @discardableResult
    func docker(_ arguments: String...) async throws -> String {
        try await docker(arguments)
    }

    @discardableResult
    func docker(_ arguments: [String]) async throws -> String {
        let result = try await Self.run(
            dockerCLI, ["-H", "unix://\(socketPath)"] + arguments, environment: ["DOCKER_CONFIG": directory + "/cli"],
            outputIn: directory)
        guard result.status == 0 else {
            throw DockerdError("docker \(arguments.joined(separator: " ")) exited \(result.status): \(result.stderr)")
        }
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Runs (or, with `start: false`, only creates) a container of ``image`` on ``network`` named `name`, with `env`
    /// and container port 9000 published on `127.0.0.1` at a free host port. It serves `/id` (holding `name`) with
    /// busybox httpd on port 9000, then runs `sleep 3600`. Returns the container id.
    ///
    /// - Parameter hostPort: publish on this host port instead of a free one.
    @discardableResult
    func runContainer(
        name: String, env: [String: String], start: Bool = true, hostPort: Int? = nil
    ) async throws -> String {
        var arguments = [start ? "run" : "create"]
        if start { arguments.append("-d") }
        arguments += ["--name", name, "--network", network, "-p", "127.0.0.1:\(hostPort.map(String.init) ?? ""):9000"]
        for (key, value) in env.sorted(by: { $0.key < $1.key }) { arguments += ["-e", "\(key)=\(value)"] }
        let script =
            "/bin/busybox mkdir -p /www && echo \(name) > /www/id && /bin/busybox httpd -p 9000 -h /www"
            + " && exec /bin/busybox sleep 3600"
        arguments += [Self.image, "/bin/busybox", "sh", "-c", script]
        return try await docker(arguments)
    }

    /// `docker inspect --format FORMAT CONTAINER`.
    func inspect(_ container: String, format: String) async throws -> String {
        try await docker("inspect", "--format", format, container)
    }

    /// The container's IP address on ``network``, as Docker reports it.
    func ipAddress(of container: String) async throws -> String {
        try await inspect(container, format: "{{(index .NetworkSettings.Networks \"\(network)\").IPAddress}}")
    }

    /// Force-removes every container of this daemon.
    func removeAllContainers() async throws {
        let ids = try await docker("ps", "-aq").split(whereSeparator: \.isWhitespace).map(String.init)
        if !ids.isEmpty { try await docker(["rm", "-f"] + ids) }
    }

    // MARK: - Stopping

    /// Removes the containers and the network, stops the daemon and everything it started, unmounts and deletes
    /// ``directory``. Safe to call twice; never throws.
    func stop() async {
        if daemon.isRunning, await pingAnswers() {
            _ = try? await removeAllContainers()
            _ = try? await docker("network", "rm", network)
        }
        await daemon.stop(grace: .seconds(30))
        await watchdogProcess.kill()
        await killLeftovers()
        unmountEverything()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// SIGKILLs processes whose command line names ``directory`` (containerd and its shims) and their descendants.
    private func killLeftovers() async {
        for _ in 0..<3 {
            let processes = Self.processTable()
            var doomed = Set(processes.filter { $0.commandLine.contains(directory) }.map(\.pid))
            doomed.remove(getpid())
            guard !doomed.isEmpty else { return }
            var grew = true
            while grew {
                let children = processes.filter { doomed.contains($0.parent) && !doomed.contains($0.pid) }
                grew = !children.isEmpty
                doomed.formUnion(children.map(\.pid))
            }
            for pid in doomed { kill(pid, SIGKILL) }
            try? await Task.sleep(for: .milliseconds(300))
        }
    }

    private static func processTable() -> [(pid: pid_t, parent: pid_t, commandLine: String)] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { entry in
            guard let pid = pid_t(entry),
                let status = try? String(contentsOfFile: "/proc/\(entry)/status", encoding: .utf8),
                let parentLine = status.split(separator: "\n").first(where: { $0.hasPrefix("PPid:") }),
                let parent = pid_t(parentLine.dropFirst(5).trimmingCharacters(in: .whitespaces)),
                let raw = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline")
            else { return nil }
            let commandLine = String(decoding: raw.map { $0 == 0 ? UInt8(ascii: " ") : $0 }, as: UTF8.self)
            return (pid, parent, commandLine)
        }
    }

    /// Lazily unmounts every mount point under ``directory`` (overlays, netns, shm), deepest first.
    private func unmountEverything() {
        guard let mountinfo = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return }
        let points = mountinfo.split(separator: "\n").compactMap { line -> String? in
            let fields = line.split(separator: " ")
            guard fields.count > 4 else { return nil }
            let point = fields[4].replacingOccurrences(of: "\\040", with: " ")
            return point.hasPrefix(directory + "/") ? point : nil
        }
        for point in points.sorted(by: { $0.count > $1.count }) { umount2(point, Int32(MNT_DETACH)) }
    }

    // MARK: - Child processes

    /// Runs `executable` to completion without blocking a thread of the cooperative pool; output goes through
    /// files in `scratch`, so a large output cannot stall the child.
    static func run(
        _ executable: String,
        _ arguments: [String],
        environment extra: [String: String] = [:],
        outputIn scratch: String
    ) async throws -> (status: Int32, stdout: String, stderr: String) {
        let base = scratch + "/run-\(UUID().uuidString)"
        let outPath = base + ".out"
        let errPath = base + ".err"
        defer {
            try? FileManager.default.removeItem(atPath: outPath)
            try? FileManager.default.removeItem(atPath: errPath)
        }
        let child = try ChildProcess(executable, arguments, logPath: outPath, errorPath: errPath, environment: extra)
        let status: Int32
        switch try await child.waitForExit(within: .seconds(300)) {
        case .exited(let code): status = code
        case .signaled(let signal): status = 128 + signal
        }
        let stdout = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
        let stderr = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        return (status, stdout, stderr)
    }
}

/// Runs a suite inside one private ``Dockerd`` (``Dockerd/current``), started before its first test and stopped
/// after its last, also when tests fail. Apply with `@Suite(.serialized, .dockerd)`.
///
/// Suites using it run one at a time (``DockerdTurn``): daemons do not know each other's networks, so two of them
/// would give their test networks the same private subnet, and the host's routes to containers would clash.
struct DockerdTrait: SuiteTrait, TestScoping {
    func provideScope(
        for test: Test,
        testCase: Test.Case?,
        performing function: @Sendable () async throws -> Void
    ) async throws {
        await DockerdTurn.shared.acquire()
        let daemon: Dockerd
        do {
            daemon = try await Dockerd.start()
        } catch {
            await DockerdTurn.shared.release()
            throw error
        }
        do {
            try await Dockerd.$current.withValue(daemon) { try await function() }
        } catch {
            await daemon.stop()
            await DockerdTurn.shared.release()
            throw error
        }
        await daemon.stop()
        await DockerdTurn.shared.release()
    }
}

/// One private ``Dockerd`` at a time in this process: a first-come, first-served lock held for a whole suite.
actor DockerdTurn {
    static let shared = DockerdTurn()

    private var held = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    /// Waits until no other suite holds the turn, then takes it.
    func acquire() async {
        guard held else {
            held = true
            return
        }
        await withCheckedContinuation { waiters.append($0) }
    }

    /// Hands the turn to the next waiting suite, or frees it.
    func release() {
        if waiters.isEmpty {
            held = false
        } else {
            waiters.removeFirst().resume()
        }
    }
}

extension Trait where Self == DockerdTrait {
    /// A private Docker daemon around the suite (see ``DockerdTrait``).
    static var dockerd: Self { DockerdTrait() }
}

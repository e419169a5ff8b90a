import AsyncHTTPClient
import CofferTestKit
import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import Testing

@testable import CofferGateway

#if canImport(Glibc)
import Glibc
#endif

/// Docker discovery feeding the gateway's store, against a real Docker Engine (a private `dockerd`, see ``Dockerd``):
/// ``DockerDiscovery`` + ``DiscoveryFeed`` + ``ShardedStore`` run as services of one `ServiceGroup`, as
/// `coffer gateway --docker` runs them, and the store's backend set follows the running `amazin-object-storage-node`
/// containers (busybox, with MinIO credentials in their environment) on a bridge network with real container IPs.
/// No data goes to the containers: the tests look at the store's backends only.
@Suite(.serialized, .enabled(if: getuid() == 0, "dockerd needs root"), .dockerd, .timeLimit(.minutes(5)))
struct DockerGatewayTests {
    static let filter = "amazin-object-storage-node"
    static let refresh = Duration.milliseconds(500)

    /// Credentials per container; node 1 has both styles (the root ones win) and values holding `=`, `:`, `@`, `/`.
    static let credentials: [String: (access: String, secret: String, env: [String: String])] = [
        "1": (
            "root-user-1", "pa=ss:w@rd/1=",
            [
                "MINIO_ROOT_USER": "root-user-1", "MINIO_ROOT_PASSWORD": "pa=ss:w@rd/1=",
                "MINIO_ACCESS_KEY": "ignored", "MINIO_SECRET_KEY": "ignored-too",
            ]
        ),
        "2": ("access-2", "se=cret=2", ["MINIO_ACCESS_KEY": "access-2", "MINIO_SECRET_KEY": "se=cret=2", "X": "y"]),
        "3": ("u3", "p3", ["MINIO_ROOT_USER": "u3", "MINIO_ROOT_PASSWORD": "p3"]),
        "4": ("u4", "p4", ["MINIO_ACCESS_KEY": "u4", "MINIO_SECRET_KEY": "p4"]),
        "5": ("u5", "p5", ["MINIO_ROOT_USER": "u5", "MINIO_ROOT_PASSWORD": "p5"]),
    ]

    private var daemon: Dockerd {
        get throws { try #require(Dockerd.current, "the suite must run inside the .dockerd trait") }
    }

    /// Nodes 1 and 2 running, node 3 created but not started, a matching running container without credentials, a
    /// matching one with only half of them, and a running non-matching one with credentials.
    private func setUpContainers() async throws -> Dockerd {
        let daemon = try daemon
        try await daemon.removeAllContainers()
        for suffix in ["1", "2"] {
            try await daemon.runContainer(name: "\(Self.filter)-\(suffix)", env: Self.credentials[suffix]!.env)
        }
        try await daemon.runContainer(name: "\(Self.filter)-3", env: Self.credentials["3"]!.env, start: false)
        try await daemon.runContainer(name: "\(Self.filter)-nocreds", env: ["OTHER": "1"])
        try await daemon.runContainer(name: "\(Self.filter)-half", env: ["MINIO_ROOT_USER": "only-user"])
        try await daemon.runContainer(
            name: "other-thing", env: ["MINIO_ROOT_USER": "other", "MINIO_ROOT_PASSWORD": "other-secret"])
        return daemon
    }

    /// What the store must hold for node `suffix`: its backend id (from the IP Docker reports) and credentials.
    private func expected(_ daemon: Dockerd, _ suffixes: [String]) async throws -> [ExpectedBackend] {
        var backends: [ExpectedBackend] = []
        for suffix in suffixes {
            let ip = try await daemon.ipAddress(of: "\(Self.filter)-\(suffix)")
            #expect(!ip.isEmpty, "Docker gave node \(suffix) no IP address")
            let credentials = try #require(Self.credentials[suffix])
            backends.append(
                ExpectedBackend(id: "s3://\(ip):9000/coffer", access: credentials.access, secret: credentials.secret))
        }
        return backends
    }

    /// The backends given with `--backend`: never contacted here (port 9 on loopback).
    private static func staticBackends(_ client: HTTPClient) -> [any Backend] {
        [
            HTTPBackend(host: "127.0.0.1", port: 9, prefix: "/store", client: client, logger: gatewayTestLogger),
            S3Backend(
                endpoint: S3Endpoint(
                    host: "127.0.0.1", port: 9, accessKey: "static-access", secretKey: "static-secret"),
                client: client, logger: gatewayTestLogger),
        ]
    }

    static let staticIDs = ["http://127.0.0.1:9/store", "s3://127.0.0.1:9/coffer"]

    private func discovery(_ daemon: Dockerd, socketPath: String? = nil) -> DockerDiscovery {
        var options = DockerDiscovery.Options(socketPath: socketPath ?? daemon.socketPath, nameFilter: Self.filter)
        options.refreshInterval = Self.refresh
        options.requestTimeout = .seconds(10)
        return DockerDiscovery(options: options, httpClient: .shared, logger: gatewayTestLogger)
    }

    private static func backendClient() -> HTTPClient {
        HTTPClient(
            eventLoopGroup: .singletonMultiThreadedEventLoopGroup,
            configuration: HTTPBackend.clientConfiguration(maxConnectionsPerBackend: 10))
    }

    /// Waits (up to 30 s) until the store's backend ids are `ids`; records how long it took.
    private func waitForBackends(_ store: ShardedStore, _ ids: [String]) async -> (matched: Bool, after: Duration) {
        let start = ContinuousClock.now
        let matched = await gatewayEventually(within: .seconds(30)) { store.gates.map(\.id) == ids }
        return (matched, ContinuousClock.now - start)
    }

    /// Checks that the store holds exactly `statics + discovered` in that order, each discovered one an S3 backend
    /// with the container's credentials.
    private func expectStore(
        _ store: ShardedStore, holds discovered: [ExpectedBackend], sourceLocation: SourceLocation = #_sourceLocation
    ) {
        let gates = store.gates
        #expect(gates.map(\.id) == Self.staticIDs + discovered.map(\.id), sourceLocation: sourceLocation)
        for backend in discovered {
            let endpoint = (gates.first { $0.id == backend.id }?.backend as? S3Backend)?.endpoint
            #expect(endpoint?.accessKey == backend.access, "\(backend.id)", sourceLocation: sourceLocation)
            #expect(endpoint?.secretKey == backend.secret, "\(backend.id)", sourceLocation: sourceLocation)
            #expect(endpoint?.port == backend.port && endpoint?.bucket == "coffer", sourceLocation: sourceLocation)
        }
        let staticS3 = gates.first { $0.id == Self.staticIDs[1] }?.backend as? S3Backend
        #expect(staticS3?.endpoint.accessKey == "static-access", sourceLocation: sourceLocation)
    }

    @Test func theStoreFollowsTheRunningMatchingContainersUntilGracefulShutdown() async throws {
        let daemon = try await setUpContainers()
        let client = Self.backendClient()
        defer { Task { try? await client.shutdown() } }
        let statics = Self.staticBackends(client)
        let store = ShardedStore(backends: statics, logger: gatewayTestLogger)
        let discovery = discovery(daemon)
        let feed = DiscoveryFeed(
            discovery: discovery, store: store, staticBackends: statics, client: client, logger: gatewayTestLogger)
        let recorder = BackendSetRecorder(store)
        let recording = Task { await recorder.record() }
        defer { recording.cancel() }

        var sequence: [[String]] = [Self.staticIDs]
        let began = ContinuousClock.now
        let stoppedWithin = try await runServices([discovery, feed, store]) {
            let first = try await expected(daemon, ["1", "2"])
            #expect(
                await waitForBackends(store, Self.staticIDs + first.map(\.id)).matched,
                "the store never held nodes 1 and 2: \(store.gates.map(\.id))")
            print("gateway store: nodes 1 and 2 present \(ContinuousClock.now - began) after the services started")
            expectStore(store, holds: first)
            recorder.sample()
            sequence.append(store.gates.map(\.id))

            try await daemon.docker("stop", "--time", "1", "\(Self.filter)-2")
            let afterStop = await waitForBackends(store, Self.staticIDs + [first[0].id])
            #expect(afterStop.matched, "node 2 stopped but the store still has \(store.gates.map(\.id))")
            print("gateway store: a stopped container was dropped \(afterStop.after) after docker stop returned")
            #expect(afterStop.after < .seconds(15), "refresh every \(Self.refresh)")
            expectStore(store, holds: [first[0]])
            recorder.sample()
            sequence.append(store.gates.map(\.id))

            try await daemon.docker("start", "\(Self.filter)-3")
            let withThree = try await expected(daemon, ["1", "3"])
            let afterStart = await waitForBackends(store, Self.staticIDs + withThree.map(\.id))
            #expect(afterStart.matched, "node 3 started but the store has \(store.gates.map(\.id))")
            print("gateway store: a started container was added \(afterStart.after) after docker start returned")
            expectStore(store, holds: withThree)
            recorder.sample()
            sequence.append(store.gates.map(\.id))

            try await daemon.runContainer(name: "\(Self.filter)-4", env: Self.credentials["4"]!.env)
            let withFour = try await expected(daemon, ["1", "3", "4"])
            #expect(await waitForBackends(store, Self.staticIDs + withFour.map(\.id)).matched)
            expectStore(store, holds: withFour)
            recorder.sample()
            sequence.append(store.gates.map(\.id))
        }
        print("gateway store: discovery, feed and store stopped \(stoppedWithin) after a graceful shutdown")

        // The static backends were in every set the store held, and the store went through exactly these sets (the
        // recorder polls for sets nobody expected; each expected one is also sampled when the test sees it).
        let seen = recorder.sets
        #expect(seen.allSatisfy { Array($0.prefix(2)) == Self.staticIDs }, "\(seen)")
        #expect(seen == sequence)

        // Discovery has finished (its streams end at once) and nothing feeds the store any more.
        var updates = discovery.updates().makeAsyncIterator()
        let last = await updates.next()
        let end = await updates.next()
        #expect(last?.map(\.name) == ["1", "3", "4"].map { "\(Self.filter)-\($0)" })  // the last known set
        #expect(end == nil)
        let before = store.gates.map(\.id)
        try await daemon.runContainer(name: "\(Self.filter)-5", env: Self.credentials["5"]!.env)
        try await daemon.docker("kill", "\(Self.filter)-1")
        try await Task.sleep(for: Self.refresh * 4)
        #expect(store.gates.map(\.id) == before)
    }

    @Test func theFeedStopsOnGracefulShutdownWhileDiscoveryRuns() async throws {
        let daemon = try await setUpContainers()
        let client = Self.backendClient()
        defer { Task { try? await client.shutdown() } }
        let statics = Self.staticBackends(client)
        let store = ShardedStore(backends: statics, logger: gatewayTestLogger)
        let discovery = discovery(daemon)
        let feed = DiscoveryFeed(
            discovery: discovery, store: store, staticBackends: statics, client: client, logger: gatewayTestLogger)
        // Discovery runs on its own (not in the group): only the feed and the store get the graceful shutdown.
        let discovering = Task { try await discovery.run() }
        defer { discovering.cancel() }

        let nodes = try await expected(daemon, ["1", "2"])
        try await runServices([feed, store]) {
            #expect(await waitForBackends(store, Self.staticIDs + nodes.map(\.id)).matched)
            expectStore(store, holds: nodes)
        }

        // Discovery still sees changes; the store, no longer fed, keeps the set it had.
        try await daemon.docker("kill", "\(Self.filter)-2")
        #expect(await gatewayEventually(within: .seconds(30)) { await discovery.nodes().count == 1 })
        #expect(store.gates.map(\.id) == Self.staticIDs + nodes.map(\.id))
        discovering.cancel()
        try await discovering.value
    }

    @Test func anUnreachableDaemonLeavesTheStaticBackendsAndStillShutsDown() async throws {
        let daemon = try daemon
        let client = Self.backendClient()
        defer { Task { try? await client.shutdown() } }
        let statics = Self.staticBackends(client)
        let store = ShardedStore(backends: statics, logger: gatewayTestLogger)
        let discovery = discovery(daemon, socketPath: daemon.directory + "/absent.sock")
        let feed = DiscoveryFeed(
            discovery: discovery, store: store, staticBackends: statics, client: client, logger: gatewayTestLogger)
        try await runServices([discovery, feed, store]) {
            try await Task.sleep(for: Self.refresh * 4)  // several failed refreshes
            #expect(store.gates.map(\.id) == Self.staticIDs)
            #expect(await discovery.nodes().isEmpty)
        }
        #expect(store.gates.map(\.id) == Self.staticIDs)
    }

    @Test func aContainerReplacedAtTheSameAddressIsUsedWithItsNewCredentials() async throws {
        let daemon = try daemon
        try await daemon.removeAllContainers()
        let client = Self.backendClient()
        defer { Task { try? await client.shutdown() } }
        let statics = Self.staticBackends(client)
        let store = ShardedStore(backends: statics, logger: gatewayTestLogger)
        // Host-port mode (a gateway on the host): the address is the published port, which the test chooses.
        var options = DockerDiscovery.Options(socketPath: daemon.socketPath, nameFilter: Self.filter)
        options.refreshInterval = Self.refresh
        options.useHostPort = true
        let discovery = DockerDiscovery(options: options, httpClient: .shared, logger: gatewayTestLogger)
        let feed = DiscoveryFeed(
            discovery: discovery, store: store, staticBackends: statics, client: client, logger: gatewayTestLogger)
        let port = try LoopbackPort.free()
        let name = "\(Self.filter)-6"
        let id = "s3://127.0.0.1:\(port)/coffer"

        try await runServices([discovery, feed, store]) {
            try await daemon.runContainer(name: name, env: Self.credentials["3"]!.env, hostPort: port)
            #expect(await waitForBackends(store, Self.staticIDs + [id]).matched)
            expectStore(store, holds: [ExpectedBackend(id: id, access: "u3", secret: "p3", port: port)])

            // The node is recreated with new keys (say, `docker compose up` after an edit) at the same address.
            try await daemon.docker("rm", "-f", name)
            try await daemon.runContainer(name: name, env: Self.credentials["4"]!.env, hostPort: port)
            #expect(
                await gatewayEventually(within: .seconds(30)) { await discovery.nodes().map(\.accessKey) == ["u4"] })
            let signsWithNewKeys = await gatewayEventually(within: .seconds(5)) {
                (store.gates.last?.backend as? S3Backend)?.endpoint.accessKey == "u4"
            }
            // The id (`s3://host:port/bucket`) leaves the keys out: the store must still replace the gate.
            #expect(signsWithNewKeys, "the store still signs for \(id) with the old container's keys")
            expectStore(store, holds: [ExpectedBackend(id: id, access: "u4", secret: "p4", port: port)])
        }
    }

    /// Runs `services` in a `ServiceGroup` while `body` runs, then triggers a graceful shutdown and expects
    /// `run()` to return within `limit` (nothing escalates to cancellation meanwhile). Returns how long it took.
    /// If `body` throws, the group is cancelled.
    @discardableResult
    private func runServices(
        _ services: [any Service],
        shutdownWithin limit: Duration = .seconds(30),
        _ body: () async throws -> Void
    ) async throws -> Duration {
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: services.map { .init(service: $0) }, logger: gatewayTestLogger))
        return try await withThrowingTaskGroup(of: Bool.self) { tasks in
            tasks.addTask {
                try await group.run()
                return true
            }
            try await body()
            let start = ContinuousClock.now
            await group.triggerGracefulShutdown()
            tasks.addTask {
                try await Task.sleep(for: limit)
                return false
            }
            let stopped = try await tasks.next()
            let took = ContinuousClock.now - start
            tasks.cancelAll()
            #expect(stopped == true, "the services were still running \(limit) after a graceful shutdown")
            return took
        }
    }
}

/// A backend the store must hold: its id and the credentials its S3 endpoint must sign with.
private struct ExpectedBackend: Sendable {
    var id: String
    var access: String
    var secret: String
    var port = 9000
}

/// Samples a store's backend ids every 5 ms and keeps each set that differs from the one before.
private final class BackendSetRecorder: Sendable {
    let store: ShardedStore
    private let seen = Mutex<[[String]]>([])

    init(_ store: ShardedStore) {
        self.store = store
    }

    var sets: [[String]] { seen.withLock { $0 } }

    /// Records the store's current set if it differs from the last one recorded.
    func sample() {
        let ids = store.gates.map(\.id)
        seen.withLock { if $0.last != ids { $0.append(ids) } }
    }

    /// Until cancelled.
    func record() async {
        while !Task.isCancelled {
            sample()
            try? await Task.sleep(for: .milliseconds(5))
        }
    }
}

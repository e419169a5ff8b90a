import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import Synchronization
import Testing

@testable import CofferGateway

#if canImport(Glibc)
import Glibc
#endif

/// Docker discovery against a real Docker Engine: a private `dockerd` (see ``Dockerd``) with busybox containers named
/// like MinIO nodes, each running busybox httpd on port 9000 (serving `/id`) and then `sleep 3600`.
@Suite(.serialized, .enabled(if: getuid() == 0, "dockerd needs root"), .dockerd)
struct DockerDiscoveryTests {
    static let filter = "amazin-object-storage-node"

    /// The containers every test starts from: two matching running nodes (one with each credential style, values
    /// holding `=`, `:`, `@`, `/`), one matching node created but not started, one matching running container
    /// without credentials, and one non-matching running container with credentials.
    static let node1Env = [
        "MINIO_ROOT_USER": "root-user-1", "MINIO_ROOT_PASSWORD": "pa=ss:w@rd/1=",
        "MINIO_ACCESS_KEY": "ignored-because-root-wins", "MINIO_SECRET_KEY": "ignored-too",
    ]
    static let node2Env = ["MINIO_ACCESS_KEY": "access-2", "MINIO_SECRET_KEY": "se=cret=2", "OTHER": "x"]

    private var daemon: Dockerd {
        get throws { try #require(Dockerd.current, "the suite must run inside the .dockerd trait") }
    }

    private func setUpContainers() async throws -> Dockerd {
        let daemon = try daemon
        try await daemon.removeAllContainers()
        try await daemon.runContainer(name: "\(Self.filter)-1", env: Self.node1Env)
        try await daemon.runContainer(name: "\(Self.filter)-2", env: Self.node2Env)
        try await daemon.runContainer(
            name: "\(Self.filter)-3", env: ["MINIO_ROOT_USER": "u3", "MINIO_ROOT_PASSWORD": "p3"], start: false)
        try await daemon.runContainer(name: "\(Self.filter)-nocreds", env: ["MINIO_ROOT_USER": "only-user"])
        try await daemon.runContainer(
            name: "other-thing", env: ["MINIO_ROOT_USER": "other", "MINIO_ROOT_PASSWORD": "other-secret"])
        return daemon
    }

    /// The nodes Docker itself reports for the two running, usable matches (`docker inspect`).
    private func expectedNodes(_ daemon: Dockerd, useHostPort: Bool) async throws -> [DiscoveredNode] {
        var nodes: [DiscoveredNode] = []
        for (suffix, access, secret) in [("1", "root-user-1", "pa=ss:w@rd/1="), ("2", "access-2", "se=cret=2")] {
            let name = "\(Self.filter)-\(suffix)"
            let id = try await daemon.inspect(name, format: "{{.Id}}")
            if useHostPort {
                let published = try await daemon.docker("port", name, "9000/tcp")
                let hostPort = try #require(published.split(separator: "\n").first?.split(separator: ":").last)
                nodes.append(
                    DiscoveredNode(
                        name: name, containerID: id, host: "127.0.0.1", port: try #require(Int(hostPort)),
                        accessKey: access, secretKey: secret))
            } else {
                let ip = try await daemon.ipAddress(of: name)
                #expect(!ip.isEmpty, "Docker gave \(name) no IP address on \(daemon.network)")
                nodes.append(
                    DiscoveredNode(
                        name: name, containerID: id, host: ip, port: 9000, accessKey: access, secretKey: secret))
            }
        }
        return nodes
    }

    private func discovery(
        _ daemon: Dockerd, _ configure: (inout DockerDiscovery.Options) -> Void = { _ in }
    )
        -> DockerDiscovery
    {
        var options = DockerDiscovery.Options(socketPath: daemon.socketPath, nameFilter: Self.filter)
        options.refreshInterval = .milliseconds(500)
        configure(&options)
        return DockerDiscovery(options: options, httpClient: .shared, logger: Logger(label: "test.docker"))
    }

    /// GET `http://host:port/id` until it answers (httpd may still be starting): proves the address is the node's.
    private func servedID(_ node: DiscoveredNode) async throws -> String {
        let deadline = ContinuousClock.now + .seconds(30)
        while true {
            do {
                let response = try await HTTPClient.shared.execute(
                    HTTPClientRequest(url: "http://\(node.authority)/id"), timeout: .seconds(5))
                let body = try await response.body.collect(upTo: 1 << 16)
                if response.status == .ok {
                    return String(buffer: body).trimmingCharacters(in: .whitespacesAndNewlines)
                }
            } catch  where ContinuousClock.now < deadline {}
            if ContinuousClock.now >= deadline { throw DockerdError("\(node) did not answer HTTP on its address") }
            try await Task.sleep(for: .milliseconds(200))
        }
    }

    @Test func negotiatesTheDaemonsAPIVersion() async throws {
        let daemon = try daemon
        let client = DockerClient(socketPath: daemon.socketPath, client: .shared)
        let version = try await client.negotiateAPIVersion()
        let reported = try await daemon.docker("version", "--format", "{{.Server.APIVersion}}")
        #expect(version == reported)
        #expect(try await client.apiVersion() == version)
    }

    @Test func findsExactlyTheRunningMatchingContainersWithTheirIPsAndKeys() async throws {
        let daemon = try await setUpContainers()
        let expected = try await expectedNodes(daemon, useHostPort: false)
        let discovery = discovery(daemon)

        let found = try await discovery.refresh()
        #expect(found == expected)
        #expect(await discovery.nodes() == expected)
        for node in found {
            #expect(try await servedID(node) == node.name)
            #expect(node.s3URL(bucket: "b").hasSuffix("@\(node.host):9000/b"))
        }
        #expect(found.first?.s3URL() == "s3://root-user-1:pa%3Dss%3Aw%40rd%2F1%3D@\(expected[0].host):9000/coffer")
    }

    @Test func publishedHostPortModeUsesLoopbackAndTheHostPort() async throws {
        let daemon = try await setUpContainers()
        let expected = try await expectedNodes(daemon, useHostPort: true)
        let discovery = discovery(daemon) { $0.useHostPort = true }

        let found = try await discovery.refresh()
        #expect(found == expected)
        #expect(found.allSatisfy { $0.host == "127.0.0.1" && $0.port != 9000 })
        for node in found { #expect(try await servedID(node) == node.name) }
    }

    @Test func theNameFilterIsPlainTextNotDockersRegex() async throws {
        let daemon = try await setUpContainers()
        // Docker's own name filter is a regular expression: `.` matches the `-` of `...-node-1`.
        let regexFilter = "\(Self.filter).1"
        let dockerMatches = try await daemon.docker("ps", "--filter", "name=\(regexFilter)", "--format", "{{.Names}}")
        #expect(dockerMatches == "\(Self.filter)-1")
        #expect(try await discovery(daemon) { $0.nameFilter = regexFilter }.refresh().isEmpty)
        // A filter naming one node exactly finds only that one.
        let one = try await discovery(daemon) { $0.nameFilter = "\(Self.filter)-2" }.refresh()
        #expect(one.map(\.name) == ["\(Self.filter)-2"])
    }

    @Test func theRunLoopNoticesContainersStoppingAndStarting() async throws {
        let daemon = try await setUpContainers()
        let expected = try await expectedNodes(daemon, useHostPort: false)
        let discovery = discovery(daemon)
        let updates = discovery.updates()

        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await discovery.run() }
            var iterator = updates.makeAsyncIterator()
            #expect(try await next(&iterator, within: .seconds(30)) == expected)

            let stoppedAt = ContinuousClock.now
            try await daemon.docker("kill", "\(Self.filter)-2")
            let afterKill = try await next(&iterator, within: .seconds(30))
            let noticedAfter = ContinuousClock.now - stoppedAt
            print("docker discovery noticed a killed container after \(noticedAfter) (refresh every 500 ms)")
            #expect(afterKill == [expected[0]])
            #expect(noticedAfter < .seconds(20))

            try await daemon.docker("start", "\(Self.filter)-3")
            let afterStart = try await next(&iterator, within: .seconds(30))
            #expect(afterStart?.map(\.name) == ["\(Self.filter)-1", "\(Self.filter)-3"])
            let node3IP = try await daemon.ipAddress(of: "\(Self.filter)-3")
            #expect(afterStart?.last?.accessKey == "u3")
            #expect(afterStart?.last?.host == node3IP)

            // Cancellation ends run(), which finishes the stream.
            group.cancelAll()
            #expect(try await next(&iterator, within: .seconds(30)) == nil)
        }
        #expect(await discovery.nodes().count == 2)
    }

    @Test func aFailedRefreshKeepsTheLastSetAndTheLoopSurvives() async throws {
        let daemon = try await setUpContainers()
        let expected = try await expectedNodes(daemon, useHostPort: false)
        // The discovery talks to the daemon through a symlink that the test removes and restores.
        let link = daemon.directory + "/link-\(UUID().uuidString.prefix(6)).sock"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: daemon.socketPath)
        defer { try? FileManager.default.removeItem(atPath: link) }
        let discovery = discovery(daemon) {
            $0.socketPath = link
            $0.refreshInterval = .milliseconds(300)
            $0.requestTimeout = .seconds(3)
        }
        #expect(try await discovery.refresh() == expected)

        try FileManager.default.removeItem(atPath: link)
        let error = await #expect(throws: DockerError.self) { try await discovery.refresh() }
        #expect(error?.kind == .unreachable)
        #expect(await discovery.nodes() == expected)

        let updates = discovery.updates()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await discovery.run() }
            var iterator = updates.makeAsyncIterator()
            #expect(try await next(&iterator, within: .seconds(5)) == expected)  // the current set, at once
            try await Task.sleep(for: .seconds(2))  // several failed refreshes
            #expect(await discovery.nodes() == expected)

            try await daemon.docker("kill", "\(Self.filter)-1")
            try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: daemon.socketPath)
            #expect(try await next(&iterator, within: .seconds(30)) == [expected[1]])
            group.cancelAll()
        }
    }

    @Test func daemonErrorsAreClear() async throws {
        let daemon = try daemon
        let client = DockerClient(socketPath: daemon.socketPath, client: .shared)

        let missing = await #expect(throws: DockerError.self) {
            try await client.get("/containers/no-such-container-\(UUID().uuidString)/json", as: [String: String].self)
        }
        #expect(missing?.kind == .status)
        #expect(missing?.status == 404)
        #expect(missing?.message.contains("No such container") == true)
        let version = try await client.apiVersion()
        #expect(missing?.request.hasPrefix("GET /v\(version)/containers/") == true)

        // A real answer of another shape: the list is a JSON array, not an object.
        let badShape = await #expect(throws: DockerError.self) {
            try await client.get("/containers/json", query: [("all", "1")], as: [String: Int].self)
        }
        #expect(badShape?.kind == .badResponse)

        let nowhere = DockerClient(socketPath: daemon.directory + "/absent.sock", client: .shared)
        let unreachable = await #expect(throws: DockerError.self) { try await nowhere.negotiateAPIVersion() }
        #expect(unreachable?.kind == .unreachable)
    }
}

/// The next element of `iterator`, or a thrown error after `limit`.
private func next(
    _ iterator: inout AsyncStream<[DiscoveredNode]>.Iterator,
    within limit: Duration
) async throws -> [DiscoveredNode]? {
    let box = IteratorBox(iterator)
    defer { iterator = box.iterator }
    return try await DockerClient.withTimeout(limit, request: "waiting for a discovery update") {
        await box.next()
    }
}

/// Lets a stream iterator be advanced from a child task (the timeout race) and handed back.
private final class IteratorBox: @unchecked Sendable {
    var iterator: AsyncStream<[DiscoveredNode]>.Iterator
    init(_ iterator: AsyncStream<[DiscoveredNode]>.Iterator) { self.iterator = iterator }
    func next() async -> [DiscoveredNode]? { await iterator.next() }
}

import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization
import Testing

@testable import CofferGateway

/// Docker discovery without a daemon: the JSON of `containers/json` and `containers/{id}/json` as recorded from
/// Docker 20.10 (trimmed to the fields that matter, values kept), and the client against a fake daemon on a unix
/// socket (negotiated version, errors, timeouts).
@Suite struct DockerParsingTests {
    /// `GET /v1.41/containers/json?all=1&filters=...`: a created container on network `none`, a running one.
    static let list = #"""
        [{"Id":"1cf01b0507737a752350de60d21b2586f4be494763e5d47bb10302c4cd72d5e1",
          "Names":["/amazin-object-storage-node-3"],"Image":"cofferbb:test","State":"created","Status":"Created",
          "Ports":[],"HostConfig":{"NetworkMode":"none"},
          "NetworkSettings":{"Networks":{"none":{"IPAMConfig":null,"NetworkID":"","IPAddress":"","IPPrefixLen":0}}}},
         {"Id":"465d10edc0041c65e1680be079fa7eaf6345208ce1ffa1b5a8ac6bcc24e29fdb",
          "Names":["/amazin-object-storage-node-1"],"Image":"cofferbb:test","State":"running",
          "Status":"Up 24 seconds","Ports":[{"IP":"127.0.0.1","PrivatePort":9000,"PublicPort":32768,"Type":"tcp"}],
          "Labels":{},"Mounts":[]}]
        """#

    /// A running container on two user networks, port 9000 published on 127.0.0.1:32768, root credentials.
    static let twoNetworks = #"""
        {"Id":"465d10edc0041c65e1680be079fa7eaf6345208ce1ffa1b5a8ac6bcc24e29fdb",
         "Created":"2026-11-21T17:34:32.405530996Z","Path":"/bin/busybox","Args":["sleep","3600"],
         "State":{"Status":"running","Running":true,"Paused":false,"Pid":9850,"ExitCode":0},
         "Name":"/amazin-object-storage-node-1","RestartCount":0,"Driver":"overlay2",
         "HostConfig":{"NetworkMode":"cofnet","PortBindings":{"9000/tcp":[{"HostIp":"127.0.0.1","HostPort":""}]}},
         "Config":{"Hostname":"465d10edc004","ExposedPorts":{"9000/tcp":{}},
           "Env":["MINIO_ROOT_USER=u1","MINIO_ROOT_PASSWORD=p=1=","PATH=/bin"],"Cmd":["/bin/busybox","sleep","3600"],
           "Image":"cofferbb:test","Labels":{}},
         "NetworkSettings":{"Bridge":"","SandboxID":"6efb2e99","HairpinMode":false,
           "Ports":{"9000/tcp":[{"HostIp":"127.0.0.1","HostPort":"32768"}]},
           "SecondaryIPAddresses":null,"EndpointID":"","Gateway":"","IPAddress":"","IPPrefixLen":0,"MacAddress":"",
           "Networks":{
             "cofnet2":{"IPAMConfig":{},"Links":null,"Aliases":["465d10edc004"],"NetworkID":"1f8b513e",
               "Gateway":"172.17.0.1","IPAddress":"172.17.0.2","IPPrefixLen":16,"DriverOpts":{}},
             "cofnet":{"IPAMConfig":null,"Links":null,"Aliases":["465d10edc004"],"NetworkID":"27c25780",
               "Gateway":"172.31.250.1","IPAddress":"172.31.250.2","IPPrefixLen":24,"DriverOpts":null}}}}
        """#

    /// Created, not started, on network `none` (empty IP), port exposed but not published, access-key credentials.
    static let createdOnNone = #"""
        {"Id":"1cf01b0507737a752350de60d21b2586f4be494763e5d47bb10302c4cd72d5e1",
         "State":{"Status":"created","Running":false,"Paused":false,"Pid":0,"ExitCode":0},
         "Name":"/amazin-object-storage-node-3",
         "Config":{"ExposedPorts":{"9000/tcp":{}},"Env":["MINIO_ACCESS_KEY=ak","MINIO_SECRET_KEY=s=k="]},
         "NetworkSettings":{"Ports":{"9000/tcp":null},"IPAddress":"",
           "Networks":{"none":{"IPAMConfig":null,"NetworkID":"","EndpointID":"","IPAddress":"","IPPrefixLen":0}}}}
        """#

    /// Running on the default bridge (legacy top-level `IPAddress`, empty network entry), published on every
    /// address (IPv4 and IPv6 wildcards), with no `Env` at all.
    static let defaultBridgeNoEnv = #"""
        {"Id":"aa11","State":{"Running":true},"Name":"/amazin-object-storage-node-9","Config":{"Env":null},
         "NetworkSettings":{"IPAddress":"172.17.0.5",
           "Ports":{"9000/tcp":[{"HostIp":"0.0.0.0","HostPort":"49153"},{"HostIp":"::","HostPort":"49153"}],
                    "9001/tcp":[{"HostIp":"0.0.0.0","HostPort":"49154"}]},
           "Networks":{"bridge":{"IPAddress":""}}}}
        """#

    static func decode<T: Decodable>(_ json: String, as type: T.Type = T.self) throws -> T {
        try JSONDecoder().decode(T.self, from: Data(json.utf8))
    }

    static let options = DockerDiscovery.Options()

    // MARK: - Recorded JSON

    @Test func listEntriesDecodeAndOnlyNamesContainingTheFilterMatch() throws {
        let summaries = try Self.decode(Self.list, as: [DockerDiscovery.ContainerSummary].self)
        #expect(summaries.map(\.state) == ["created", "running"])
        #expect(summaries.allSatisfy { DockerDiscovery.matches(names: $0.names ?? [], filter: "object-storage-node") })
        #expect(DockerDiscovery.matches(names: ["/amazin-object-storage-node-1"], filter: "amazin-object-storage-node"))
        // Docker's filter is a regex; ours is text: `.` is a dot, and the leading `/` is not part of the name.
        #expect(!DockerDiscovery.matches(names: ["/amazin-object-storage-node-1"], filter: "storage-node.1"))
        #expect(!DockerDiscovery.matches(names: ["/amazin-object-storage-node-1"], filter: "/amazin"))
        #expect(!DockerDiscovery.matches(names: ["/other-thing"], filter: "amazin-object-storage-node"))
        #expect(!DockerDiscovery.matches(names: [], filter: "amazin-object-storage-node"))
    }

    @Test func aRunningContainerOnTwoNetworksUsesTheFirstByNameOrTheChosenOne() throws {
        let details = try Self.decode(Self.twoNetworks, as: DockerDiscovery.ContainerDetails.self)
        let node = try DockerDiscovery.node(from: details, options: Self.options)
        #expect(
            node
                == DiscoveredNode(
                    name: "amazin-object-storage-node-1",
                    containerID: "465d10edc0041c65e1680be079fa7eaf6345208ce1ffa1b5a8ac6bcc24e29fdb",
                    host: "172.31.250.2", port: 9000, accessKey: "u1", secretKey: "p=1="))

        var onSecond = Self.options
        onSecond.network = "cofnet2"
        #expect(try DockerDiscovery.node(from: details, options: onSecond).host == "172.17.0.2")
        onSecond.network = "absent"
        #expect(throws: DockerDiscovery.SkipReason.self) { try DockerDiscovery.node(from: details, options: onSecond) }

        var otherPort = Self.options
        otherPort.port = 9001
        #expect(try DockerDiscovery.node(from: details, options: otherPort).port == 9001)
    }

    @Test func publishedHostPortMode() throws {
        var hostPort = Self.options
        hostPort.useHostPort = true
        let details = try Self.decode(Self.twoNetworks, as: DockerDiscovery.ContainerDetails.self)
        let node = try DockerDiscovery.node(from: details, options: hostPort)
        #expect(node.host == "127.0.0.1")
        #expect(node.port == 32768)

        // Wildcard bindings are reached on loopback; IPv4 is preferred over the `::` binding.
        let wildcard = try Self.decode(Self.defaultBridgeNoEnv, as: DockerDiscovery.ContainerDetails.self)
        let published = try DockerDiscovery.publishedAddress(wildcard.networkSettings, port: 9000)
        #expect(published.host == "127.0.0.1" && published.port == 49153)
        #expect(try DockerDiscovery.publishedAddress(wildcard.networkSettings, port: 9001).port == 49154)
        #expect(throws: DockerDiscovery.SkipReason.self) {
            try DockerDiscovery.publishedAddress(wildcard.networkSettings, port: 9002)
        }

        // Exposed but not published (`null`), and an IPv6-only binding.
        let created = try Self.decode(Self.createdOnNone, as: DockerDiscovery.ContainerDetails.self)
        #expect(throws: DockerDiscovery.SkipReason.self) {
            try DockerDiscovery.publishedAddress(created.networkSettings, port: 9000)
        }
        let ipv6 = try Self.decode(
            #"{"Id":"b","NetworkSettings":{"Ports":{"9000/tcp":[{"HostIp":"::","HostPort":"5000"}]}}}"#,
            as: DockerDiscovery.ContainerDetails.self)
        #expect(try DockerDiscovery.publishedAddress(ipv6.networkSettings, port: 9000).host == "::1")
    }

    @Test func containersThatCannotBeNodesAreSkippedWithAReason() throws {
        let created = try Self.decode(Self.createdOnNone, as: DockerDiscovery.ContainerDetails.self)
        #expect(throws: DockerDiscovery.SkipReason("not running")) {
            try DockerDiscovery.node(from: created, options: Self.options)
        }
        // Running, but the only network gave no address: the legacy top-level address is used; with no Env, no node.
        let legacy = try Self.decode(Self.defaultBridgeNoEnv, as: DockerDiscovery.ContainerDetails.self)
        #expect(try DockerDiscovery.containerIP(legacy.networkSettings, network: nil) == "172.17.0.5")
        let noEnv = #expect(throws: DockerDiscovery.SkipReason.self) {
            try DockerDiscovery.node(from: legacy, options: Self.options)
        }
        #expect(noEnv?.description.contains("no credentials") == true)

        var running = created
        running.state?.running = true
        let noIP = #expect(throws: DockerDiscovery.SkipReason.self) {
            try DockerDiscovery.node(from: running, options: Self.options)
        }
        #expect(noIP?.description.contains("no IP address") == true)
        let credentials = DockerDiscovery.credentials(fromEnv: created.config?.env ?? [])
        #expect(credentials?.accessKey == "ak" && credentials?.secretKey == "s=k=")
    }

    @Test func credentialsPreferRootThenAccessKeysWithExactNames() throws {
        typealias D = DockerDiscovery
        func keys(_ env: [String]) -> [String]? { D.credentials(fromEnv: env).map { [$0.accessKey, $0.secretKey] } }
        #expect(
            keys(["MINIO_ROOT_USER=r", "MINIO_ROOT_PASSWORD=a=b==", "MINIO_ACCESS_KEY=x", "MINIO_SECRET_KEY=y"])
                == ["r", "a=b=="])
        #expect(keys(["MINIO_ACCESS_KEY=ak", "MINIO_SECRET_KEY=sk=1"]) == ["ak", "sk=1"])
        // An incomplete root pair falls back to the access pair; an empty value counts as unset.
        #expect(keys(["MINIO_ROOT_USER=r", "MINIO_ACCESS_KEY=ak", "MINIO_SECRET_KEY=sk"]) == ["ak", "sk"])
        #expect(
            keys(["MINIO_ROOT_USER=r", "MINIO_ROOT_PASSWORD=", "MINIO_ACCESS_KEY=ak", "MINIO_SECRET_KEY=sk"])
                == ["ak", "sk"])
        // Exact names only: no prefixes, suffixes, other cases; entries without `=` are ignored; later wins.
        #expect(keys(["MINIO_ROOT_USER_FILE=/run/u", "MINIO_ROOT_PASSWORD_FILE=/run/p"]) == nil)
        #expect(keys(["minio_root_user=r", "minio_root_password=p"]) == nil)
        #expect(keys(["MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"]) == nil)
        #expect(keys(["MINIO_ROOT_USER=a", "MINIO_ROOT_PASSWORD=b", "MINIO_ROOT_USER=c"]) == ["c", "b"])
        #expect(keys([]) == nil)
    }

    @Test func nodesBecomeS3URLsWithEncodedKeysAndNeverPrintSecrets() {
        let node = DiscoveredNode(
            name: "amazin-object-storage-node-1", containerID: String(repeating: "ab", count: 32), host: "172.18.0.2",
            port: 9000, accessKey: "user:1@x", secretKey: "p=ss/w%rd +")
        #expect(node.s3URL() == "s3://user%3A1%40x:p%3Dss%2Fw%25rd%20%2B@172.18.0.2:9000/coffer")
        #expect(node.s3URL(bucket: "data").hasSuffix("@172.18.0.2:9000/data"))
        #expect(!node.description.contains("p=ss") && !"\(node)".contains("w%rd"))
        #expect(node.description == "amazin-object-storage-node-1 (abababababab) at 172.18.0.2:9000")
        var ipv6 = node
        ipv6.host = "::1"
        #expect(ipv6.authority == "[::1]:9000")
    }

    @Test func filtersQueryAndVersionSyntax() {
        let filters = DockerDiscovery.filtersJSON(nameFilter: "amazin-object-storage-node")
        #expect(filters == #"{"name":["amazin-object-storage-node"],"status":["running"]}"#)
        #expect(
            DockerClient.percentEncode(filters)
                == "%7B%22name%22%3A%5B%22amazin-object-storage-node%22%5D%2C%22status%22%3A%5B%22running%22%5D%7D")
        #expect(DockerClient.percentEncode("/var/run/docker.sock") == "%2Fvar%2Frun%2Fdocker.sock")
        #expect(DockerClient.percentEncode("é") == "%C3%A9")
        #expect(DockerClient.isValidVersion("1.41") && DockerClient.isValidVersion("1.52"))
        for bad in ["", "1", "1.", ".41", "1.41.0", "1.4x", "1.41/../x", "v1.41"] {
            #expect(!DockerClient.isValidVersion(bad), "\(bad)")
        }
    }
}

// MARK: - A fake daemon

extension DockerParsingTests {
    @Test func theVersionFromPingPrefixesEveryRequestAndVanishedOrForeignContainersAreSkipped() async throws {
        let respond: @Sendable (String) -> FakeDockerDaemon.Answer? = { uri in
            switch uri.split(separator: "?").first.map(String.init) ?? "" {
            case "/_ping": .init(headers: ["Api-Version": "1.23"], body: "OK")
            case "/v1.23/containers/json":
                .init(
                    body: #"""
                        [{"Id":"465d10edc0041c65e1680be079fa7eaf6345208ce1ffa1b5a8ac6bcc24e29fdb",
                          "Names":["/amazin-object-storage-node-1"]},
                         {"Id":"gone","Names":["/amazin-object-storage-node-gone"]},
                         {"Id":"other","Names":["/other-thing"]}]
                        """#)
            case "/v1.23/containers/465d10edc0041c65e1680be079fa7eaf6345208ce1ffa1b5a8ac6bcc24e29fdb/json":
                .init(body: Self.twoNetworks)
            default: .init(status: .notFound, body: #"{"message":"No such container: x"}"#)
            }
        }
        let uris = try await FakeDockerDaemon.with(respond) { daemon in
            let discovery = DockerDiscovery(
                options: .init(socketPath: daemon.socketPath), httpClient: .shared, logger: Logger(label: "test"))
            let nodes = try await discovery.refresh()
            #expect(nodes.map(\.host) == ["172.31.250.2"])
            return daemon.requests
        }
        #expect(uris.first == "/_ping")
        let list = try #require(uris.dropFirst().first)
        #expect(list.hasPrefix("/v1.23/containers/json?filters="))
        let query = try #require(URLComponents(string: list)?.queryItems?.first { $0.name == "filters" }?.value)
        #expect(query == #"{"name":["amazin-object-storage-node"],"status":["running"]}"#)
        // The foreign name is never inspected; the vanished one answers 404 and is left out without an error.
        #expect(uris.dropFirst(2).allSatisfy { $0.hasPrefix("/v1.23/containers/") && !$0.contains("other") })
        #expect(uris.count == 4)
    }

    @Test func daemonAnswersThatAreNotTheAPIAreClearErrors() async throws {
        let respond: @Sendable (String) -> FakeDockerDaemon.Answer? = { uri in
            switch uri.split(separator: "?").first.map(String.init) ?? "" {
            case "/_ping": .init(headers: ["Api-Version": "1.41"], body: "OK")
            case "/v1.41/containers/json": .init(body: "<html>not json</html>")
            case "/v1.41/info": .init(status: .internalServerError, body: #"{"message":"boom: disk"}"#)
            default: .init(status: .badGateway, body: "plain failure\n")
            }
        }
        try await FakeDockerDaemon.with(respond) { daemon in
            let client = DockerClient(socketPath: daemon.socketPath, client: .shared)
            let badJSON = await #expect(throws: DockerError.self) {
                try await DockerDiscovery(options: .init(socketPath: daemon.socketPath), httpClient: .shared).refresh()
            }
            #expect(badJSON?.kind == .badResponse)
            #expect(badJSON?.request.hasPrefix("GET /v1.41/containers/json?filters=") == true)

            let status = await #expect(throws: DockerError.self) {
                try await client.get("/info", as: [String: Int].self)
            }
            #expect(status?.kind == .status && status?.status == 500 && status?.message == "boom: disk")
            let plain = await #expect(throws: DockerError.self) { try await client.get("/x", as: [String: Int].self) }
            #expect(plain?.status == 502 && plain?.message == "plain failure")
        }
    }

    @Test func aPingWithoutAValidVersionIsRefused() async throws {
        for header: [String: String] in [[:], ["Api-Version": "1.41/../../x"]] {
            try await FakeDockerDaemon.with({ _ in .init(headers: header, body: "OK") }) { daemon in
                let client = DockerClient(socketPath: daemon.socketPath, client: .shared)
                let error = await #expect(throws: DockerError.self) { try await client.negotiateAPIVersion() }
                #expect(error?.kind == .badResponse)
                #expect(daemon.requests == ["/_ping"])
            }
        }
    }

    @Test func aDaemonThatNeverAnswersTimesOut() async throws {
        try await FakeDockerDaemon.with({ _ in nil }) { daemon in
            let client = DockerClient(
                socketPath: daemon.socketPath, client: .shared, requestTimeout: .milliseconds(300))
            let started = ContinuousClock.now
            let error = await #expect(throws: DockerError.self) { try await client.negotiateAPIVersion() }
            #expect(error?.kind == .timeout)
            #expect(ContinuousClock.now - started < .seconds(10))
        }
    }
}

/// A fake Docker daemon: an HTTP/1.1 server on a unix socket in a temp directory that answers each request URI with
/// what `respond` returns (`nil`: never answers) and records the URIs.
final class FakeDockerDaemon: Sendable {
    struct Answer: Sendable {
        var status: HTTPResponseStatus = .ok
        var headers: [String: String] = [:]
        var body: String = ""
    }

    let directory: String
    var socketPath: String { directory + "/docker.sock" }
    private let channel: any Channel
    private let recorded = Mutex<[String]>([])

    var requests: [String] { recorded.withLock { $0 } }

    private init(directory: String, channel: any Channel) {
        self.directory = directory
        self.channel = channel
    }

    private static func start(_ respond: @escaping @Sendable (String) -> Answer?) async throws -> FakeDockerDaemon {
        let directory = NSTemporaryDirectory() + "fake-docker-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let log = Log()
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline().flatMap {
                    channel.pipeline.addHandler(Handler(respond: respond, log: log))
                }
            }
            .bind(unixDomainSocketPath: directory + "/docker.sock").get()
        let daemon = FakeDockerDaemon(directory: directory, channel: channel)
        log.daemon.withLock { $0 = daemon }
        return daemon
    }

    /// Runs `body` with a fresh fake daemon, then closes it and deletes its directory, also when `body` throws.
    static func with<T>(
        _ respond: @escaping @Sendable (String) -> Answer?,
        _ body: (FakeDockerDaemon) async throws -> T
    ) async throws -> T {
        let daemon = try await start(respond)
        do {
            let result = try await body(daemon)
            await daemon.stop()
            return result
        } catch {
            await daemon.stop()
            throw error
        }
    }

    /// Closes the listening socket (NIO unlinks it), then deletes the directory.
    func stop() async {
        try? await channel.close()
        try? FileManager.default.removeItem(atPath: directory)
    }

    private final class Log: Sendable {
        let daemon = Mutex<FakeDockerDaemon?>(nil)
        func record(_ uri: String) { daemon.withLock { $0?.recorded.withLock { $0.append(uri) } } }
    }

    private final class Handler: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let respond: @Sendable (String) -> Answer?
        let log: Log
        var uri = ""
        var hasHost = false

        init(respond: @escaping @Sendable (String) -> Answer?, log: Log) {
            self.respond = respond
            self.log = log
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head):
                uri = head.uri
                hasHost = !(head.headers.first(name: "host") ?? "").isEmpty
            case .body: break
            case .end:
                log.record(uri)
                // Like Docker's Go server: HTTP/1.1 without a Host header is a 400.
                let answer = hasHost ? respond(uri) : Answer(status: .badRequest, body: "missing required Host header")
                guard let answer else { return }
                var headers = HTTPHeaders(answer.headers.map { ($0.key, $0.value) })
                headers.add(name: "content-length", value: String(answer.body.utf8.count))
                headers.add(name: "content-type", value: "application/json")
                let head = HTTPResponseHead(version: .http1_1, status: answer.status, headers: headers)
                context.write(wrapOutboundOut(.head(head)), promise: nil)
                context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: answer.body)))), promise: nil)
                context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            }
        }
    }
}

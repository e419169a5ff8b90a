import ArgumentParser
import AsyncHTTPClient
import CofferCore
import CofferGateway
import CofferHTTP
import Logging
import NIOCore
import ServiceLifecycle

struct Gateway: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a stateless gateway: the same HTTP API, with keys spread over S3-compatible or HTTP backends.",
        discussion: """
            Backends come from repeated --backend URLs (s3://ACCESS:SECRET@host:port/bucket, http://host:port/prefix)
            or from the Docker Engine API (--docker). Keys are placed by rendezvous hashing, so adding or removing a
            backend moves only the keys that must move.
            """
    )

    @OptionGroup var server: ServerOptions

    static let defaultListen = ListenAddress(host: "0.0.0.0", port: 3000)

    @Option(
        name: .customLong("backend"),
        help: "A backend: s3://ACCESS:SECRET@host:port/bucket or http://host:port/prefix (repeat for more).")
    var backends: [String] = []

    @Flag(help: "Find MinIO backends with the Docker Engine API instead of (or besides) --backend.")
    var docker = false

    @Option(help: "The Docker Engine's unix socket.")
    var dockerSocket: String = "/var/run/docker.sock"

    @Option(help: "Use running containers whose name contains this.")
    var dockerNameFilter: String = "amazin-object-storage-node"

    @Option(help: "The containers' S3 port.")
    var dockerPort: Int = 9000

    @Flag(help: "Reach containers at 127.0.0.1 and their published host port (a gateway running on the host).")
    var dockerHostPort = false

    @Option(help: "Take container addresses from this Docker network (default: the first that has one).")
    var dockerNetwork: String?

    @Option(help: "Seconds between Docker refreshes.")
    var dockerRefresh: Double = 5

    @Option(help: "Bucket used on discovered backends (created when missing).")
    var bucket: String = "coffer"

    @Option(help: "Copies of each blob, on the top-ranked backends; a write is acknowledged after all of them.")
    var replicas: Int = 1

    @Option(help: "Requests in flight per backend; more wait in a queue (they are not failed).")
    var maxConnsPerBackend: Int = 10

    @Option(help: "Seconds to keep retrying a backend that answers 429/503 before answering 503 to the client.")
    var retryDeadline: Double = 10

    @Option(
        help: """
            Read cache (bytes, or with a unit: 64MiB); 0 turns it off. Default: off, or 512MiB with --shared-volume             (objects up to 8MiB).
            """)
    var cacheSize: ByteSize?

    @Flag(
        help: """
            The backends share one volume (fileserver mode): send each request to the least busy backend \
            instead of hashing, order the operations on each name across all backends, and answer from what this \
            gateway acknowledged.
            """)
    var sharedVolume = false

    @Option(name: .customLong("weight"), help: "A backend's hashing weight, BACKEND-ID=WEIGHT (default 1; repeat).")
    var weights: [String] = []

    func validate() throws {
        guard docker || !backends.isEmpty else { throw ValidationError("give at least one --backend, or --docker") }
        for backend in backends {
            do { _ = try BackendURL(parsing: backend) } catch { throw ValidationError("--backend: \(error)") }
        }
        _ = try parseWeights()
        guard replicas >= 1 else { throw ValidationError("--replicas must be at least 1") }
        guard maxConnsPerBackend >= 1 else { throw ValidationError("--max-conns-per-backend must be at least 1") }
        guard retryDeadline >= 0, dockerRefresh > 0 else {
            throw ValidationError("--retry-deadline and --docker-refresh must be positive")
        }
        guard (1...65535).contains(dockerPort) else { throw ValidationError("--docker-port must be a port number") }
        if let problem = S3Endpoint.bucketNameProblem(bucket) { throw ValidationError("--bucket: \(problem)") }
    }

    /// The read cache a shared-volume gateway runs with unless `--cache-size` says otherwise: an eighth of the
    /// fileserver challenge's 4 GB budget, for objects up to the size a write is buffered whole (8 MiB).
    static let sharedCacheSize: Int64 = 512 << 20
    static let sharedCacheMaxObjectSize = 8 << 20

    func parseWeights() throws -> [String: Double] {
        var result: [String: Double] = [:]
        for weight in weights {
            guard let equals = weight.lastIndex(of: "="), let value = Double(weight[weight.index(after: equals)...]),
                value > 0
            else { throw ValidationError("--weight must be BACKEND-ID=WEIGHT with a positive weight: \(weight)") }
            result[String(weight[..<equals])] = value
        }
        return result
    }

    func run() async throws {
        bootstrapLogging(level: server.debug ? .debug : .info)
        let logger = Logger(label: "coffer.gateway")
        OpenFileLimit.raise(logger: logger)

        var gate = BackendGate.Configuration()
        gate.maxConcurrentRequests = maxConnsPerBackend
        gate.throttleDeadline = .milliseconds(Int64(retryDeadline * 1000))
        let storeConfiguration = ShardedStore.Configuration(
            replicas: replicas,
            placement: sharedVolume ? .shared : .hashed,
            cacheSize: Int(cacheSize?.bytes ?? (sharedVolume ? Self.sharedCacheSize : 0)),
            cacheMaxObjectSize: sharedVolume ? Self.sharedCacheMaxObjectSize : 1 << 20,
            gate: gate,
            weights: try parseWeights())

        let client = HTTPClient(
            eventLoopGroupProvider: .singleton,
            configuration: HTTPBackend.clientConfiguration(maxConnectionsPerBackend: maxConnsPerBackend))
        let dockerClient = docker ? HTTPClient(eventLoopGroupProvider: .singleton) : nil
        do {
            try await serve(storeConfiguration, client: client, dockerClient: dockerClient, logger: logger)
        } catch {
            try? await client.shutdown()
            try? await dockerClient?.shutdown()
            throw error
        }
        try await client.shutdown()
        try await dockerClient?.shutdown()
    }

    private func serve(
        _ storeConfiguration: ShardedStore.Configuration,
        client: HTTPClient,
        dockerClient: HTTPClient?,
        logger: Logger
    ) async throws {
        let staticBackends: [any Backend] = try backends.map { try makeBackend(BackendURL(parsing: $0), client) }
        let store = ShardedStore(backends: staticBackends, configuration: storeConfiguration, logger: logger)
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if let dockerClient {
            var options = DockerDiscovery.Options()
            options.socketPath = dockerSocket
            options.nameFilter = dockerNameFilter
            options.port = dockerPort
            options.useHostPort = dockerHostPort
            options.network = dockerNetwork
            options.refreshInterval = .milliseconds(Int64(dockerRefresh * 1000))
            let discovery = DockerDiscovery(options: options, httpClient: dockerClient, logger: logger)
            services.append(.init(service: discovery))
            services.append(
                .init(
                    service: DiscoveryFeed(
                        discovery: discovery, store: store, staticBackends: staticBackends, bucket: bucket,
                        client: client, logger: logger)))
        }
        services.append(.init(service: store))

        let http = CofferHTTPServer(
            store: store, configuration: server.httpConfiguration(defaultListen: Self.defaultListen), logger: logger)
        try await http.start()
        logger.info(
            "gateway started",
            metadata: [
                "backends": "\(staticBackends.map(\.id))", "docker": "\(docker)", "replicas": "\(replicas)",
                "max_conns_per_backend": "\(maxConnsPerBackend)", "placement": "\(sharedVolume ? "shared" : "hashed")",
            ])
        services.append(.init(service: http))
        // Services stop in reverse order: the HTTP server drains first, then the store and discovery.
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}

/// Builds the backend for one parsed URL on the shared client.
func makeBackend(_ url: BackendURL, _ client: HTTPClient) -> any Backend {
    switch url {
    case .s3(let endpoint): S3Backend(endpoint: endpoint, client: client)
    case .http: HTTPBackend(url: url, client: client)!
    }
}

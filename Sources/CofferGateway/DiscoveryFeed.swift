import AsyncHTTPClient
import Logging
import ServiceLifecycle

/// Feeds each node set Docker discovery publishes into the store (next to the static backends).
public struct DiscoveryFeed: Service {
    let discovery: DockerDiscovery
    let store: ShardedStore
    let staticBackends: [any Backend]
    let bucket: String
    let client: HTTPClient
    let logger: Logger

    /// - Parameters:
    ///   - staticBackends: kept in every set (the `--backend` ones).
    ///   - bucket: the bucket used on every discovered node.
    ///   - client: the shared backend client (see ``HTTPBackend/clientConfiguration(maxConnectionsPerBackend:timeouts:)``).
    public init(
        discovery: DockerDiscovery,
        store: ShardedStore,
        staticBackends: [any Backend] = [],
        bucket: String = S3Endpoint.defaultBucket,
        client: HTTPClient,
        logger: Logger = Logger(label: "coffer.gateway")
    ) {
        self.discovery = discovery
        self.store = store
        self.staticBackends = staticBackends
        self.bucket = bucket
        self.client = client
        self.logger = logger
    }

    /// The S3 backend for one discovered node.
    public static func backend(for node: DiscoveredNode, bucket: String, client: HTTPClient) -> S3Backend {
        S3Backend(
            endpoint: S3Endpoint(
                host: node.host, port: node.port, bucket: bucket, accessKey: node.accessKey, secretKey: node.secretKey),
            client: client)
    }

    /// Until ``DockerDiscovery/run()`` finishes its streams, or a graceful shutdown: each published node set
    /// replaces the store's backends (static ones first).
    public func run() async throws {
        await cancelWhenGracefulShutdown {
            for await nodes in discovery.updates() {
                let discovered: [any Backend] = nodes.map { Self.backend(for: $0, bucket: bucket, client: client) }
                store.update(backends: staticBackends + discovered)
                logger.info(
                    "docker backends", metadata: ["nodes": "\(nodes.map { "\($0.name)=\($0.host):\($0.port)" })"])
            }
        }
    }
}

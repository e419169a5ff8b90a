import AsyncHTTPClient
import Logging
import ServiceLifecycle
import Synchronization

/// Finds S3 backends among the local Docker daemon's containers, and keeps finding them.
///
/// A node is a running container whose name contains ``Options/nameFilter`` (as plain text), with MinIO credentials
/// in its environment (``DiscoveredNode``). Each refresh asks the daemon (``DockerClient``, version negotiated from
/// `/_ping`) for `GET /containers/json` filtered by name and `status=running`, then inspects each match for its
/// addresses and `Config.Env`. Containers that match but cannot be used (no credentials, no address, port not
/// published) are skipped with one warning per container and reason.
///
/// Use it as a `Service`: ``run()`` refreshes every ``Options/refreshInterval`` until cancelled or until a graceful
/// shutdown, then returns. Consumers either poll ``nodes()`` or iterate ``updates()``, which yields the current set
/// and then every changed set (sorted by name, then id). A failed refresh keeps the last known set and logs a
/// warning; it never ends the loop.
public final class DockerDiscovery: Service, Sendable {
    /// Where to look and what to take.
    public struct Options: Sendable, Hashable {
        /// The daemon's unix socket.
        public var socketPath: String
        /// Containers whose name contains this text are candidates.
        public var nameFilter: String
        /// The container port S3 answers on.
        public var port: Int
        /// Use the host port published for ``port`` (and the binding's address, `127.0.0.1` for a wildcard) instead
        /// of the container's IP: for a gateway running on the host rather than on the containers' network.
        public var useHostPort: Bool
        /// Take the IP on this Docker network; `nil`: the first network (by name) that gave the container one.
        public var network: String?
        /// Pause between refreshes.
        public var refreshInterval: Duration
        /// Bound on each Docker API request.
        public var requestTimeout: Duration

        public init(
            socketPath: String = "/var/run/docker.sock",
            nameFilter: String = "amazin-object-storage-node",
            port: Int = 9000,
            useHostPort: Bool = false,
            network: String? = nil,
            refreshInterval: Duration = .seconds(5),
            requestTimeout: Duration = .seconds(10)
        ) {
            self.socketPath = socketPath
            self.nameFilter = nameFilter
            self.port = port
            self.useHostPort = useHostPort
            self.network = network
            self.refreshInterval = refreshInterval
            self.requestTimeout = requestTimeout
        }
    }

    private struct State {
        var latest: [DiscoveredNode]?
        var subscribers: [UInt64: AsyncStream<[DiscoveredNode]>.Continuation] = [:]
        var nextSubscriber: UInt64 = 0
        var finished = false
        /// Container id → the reason it was last skipped, so each reason is logged at warning level once.
        var skipped: [String: SkipReason] = [:]
        /// The last refresh error, so a failure that repeats is logged at warning level once.
        var lastFailure: String?
    }

    public let options: Options
    /// The API client on ``Options/socketPath``.
    public let client: DockerClient
    private let logger: Logger
    private let state = Mutex(State())

    /// - Parameters:
    ///   - httpClient: used for the unix-socket requests; the caller shuts it down after ``run()`` returned.
    ///   - logger: changes at info, skipped containers and failed refreshes at warning, with `docker_socket`,
    ///     `container`, `error` and `nodes` metadata. Credentials are never logged.
    public init(
        options: Options = Options(),
        httpClient: HTTPClient,
        logger: Logger = Logger(label: "coffer.gateway.docker")
    ) {
        self.options = options
        var logger = logger
        logger[metadataKey: "docker_socket"] = "\(options.socketPath)"
        logger[metadataKey: "name_filter"] = "\(options.nameFilter)"
        self.logger = logger
        self.client = DockerClient(
            socketPath: options.socketPath, client: httpClient, requestTimeout: options.requestTimeout, logger: logger)
    }

    /// The latest discovered set (sorted by name, then id); empty until a refresh succeeded.
    public func nodes() async -> [DiscoveredNode] {
        state.withLock { $0.latest ?? [] }
    }

    /// A stream of node sets: first the current one (if a refresh has succeeded), then each set that differs from
    /// the previous one. Only the newest unread set is buffered. Each call makes an independent stream; it finishes
    /// when ``run()`` returns, or at once (after the current set) if it already has.
    public func updates() -> AsyncStream<[DiscoveredNode]> {
        let (stream, continuation) = AsyncStream<[DiscoveredNode]>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let (current, finished, id) = state.withLock { state in
            let id = state.nextSubscriber
            state.nextSubscriber += 1
            if !state.finished { state.subscribers[id] = continuation }
            return (state.latest, state.finished, id)
        }
        if let current { continuation.yield(current) }
        if finished {
            continuation.finish()
        } else {
            continuation.onTermination = { [weak self] _ in
                _ = self?.state.withLock { $0.subscribers.removeValue(forKey: id) }
            }
        }
        return stream
    }

    /// Refreshes every ``Options/refreshInterval`` (the first refresh at once) until the task is cancelled or a
    /// graceful shutdown begins, then finishes every ``updates()`` stream and returns. Never throws: a failed
    /// refresh is logged and the last known set kept.
    public func run() async throws {
        logger.info("docker discovery started", metadata: ["refresh_interval": "\(options.refreshInterval)"])
        await cancelWhenGracefulShutdown { await self.loop() }
        let subscribers = state.withLock { state in
            state.finished = true
            defer { state.subscribers = [:] }
            return Array(state.subscribers.values)
        }
        for subscriber in subscribers { subscriber.finish() }
        logger.info("docker discovery stopped")
    }

    private func loop() async {
        while !Task.isCancelled {
            do {
                try await refresh()
                let recovered = state.withLock { state in
                    defer { state.lastFailure = nil }
                    return state.lastFailure != nil
                }
                if recovered { logger.info("docker discovery refresh succeeded again") }
            } catch is CancellationError {
                return
            } catch {
                noteFailure(error)
            }
            do {
                try await Task.sleep(for: options.refreshInterval)
            } catch {
                return
            }
        }
    }

    /// Asks the daemon once, publishes the set if it changed, and returns it.
    ///
    /// - Errors: ``DockerError`` when the daemon cannot be asked or answers badly (the last set is kept, and the
    ///   API version is negotiated again next time). A container that vanished between the listing and its
    ///   inspection is left out, not an error.
    @discardableResult
    public func refresh() async throws -> [DiscoveredNode] {
        let found: [DiscoveredNode]
        do {
            found = try await discover()
        } catch {
            client.resetAPIVersion()
            throw error
        }
        publish(found)
        return found
    }

    private func discover() async throws -> [DiscoveredNode] {
        let summaries = try await client.get(
            "/containers/json", query: [("filters", Self.filtersJSON(nameFilter: options.nameFilter))],
            as: [ContainerSummary].self)
        var found: [DiscoveredNode] = []
        var skipped: [String: SkipReason] = [:]
        for summary in summaries where Self.matches(names: summary.names ?? [], filter: options.nameFilter) {
            let details: ContainerDetails
            do {
                details = try await client.get(
                    "/containers/\(DockerClient.percentEncode(summary.id))/json", as: ContainerDetails.self)
            } catch let error as DockerError where error.status == 404 {
                continue  // removed since the listing
            }
            guard Self.matches(names: [details.name ?? ""], filter: options.nameFilter) else { continue }
            do {
                found.append(try Self.node(from: details, options: options))
            } catch {
                skipped[details.id] = error
                noteSkip(details, reason: error)
            }
        }
        state.withLock { $0.skipped = skipped }
        return found.sorted { ($0.name, $0.containerID) < ($1.name, $1.containerID) }
    }

    private func publish(_ nodes: [DiscoveredNode]) {
        let subscribers: [AsyncStream<[DiscoveredNode]>.Continuation]? = state.withLock { state in
            guard state.latest != nodes else { return nil }
            state.latest = nodes
            return Array(state.subscribers.values)
        }
        guard let subscribers else { return }
        logger.info(
            "docker discovery: backend set changed",
            metadata: ["count": "\(nodes.count)", "nodes": .array(nodes.map { .string($0.description) })])
        for subscriber in subscribers { subscriber.yield(nodes) }
    }

    private func noteSkip(_ details: ContainerDetails, reason: SkipReason) {
        let isNew = state.withLock { $0.skipped[details.id] != reason }
        let metadata: Logger.Metadata = [
            "container": "\(Self.stripSlash(details.name ?? details.id))", "reason": "\(reason)",
        ]
        if isNew {
            logger.warning("docker discovery: skipping a matching container", metadata: metadata)
        } else {
            logger.debug("docker discovery: skipping a matching container", metadata: metadata)
        }
    }

    private func noteFailure(_ error: any Error) {
        let message = "\(error)"
        let (isNew, kept) = state.withLock { state in
            defer { state.lastFailure = message }
            return (state.lastFailure != message, state.latest?.count ?? 0)
        }
        let metadata: Logger.Metadata = ["error": "\(message)", "kept_nodes": "\(kept)"]
        if isNew {
            logger.warning("docker discovery refresh failed; keeping the last known nodes", metadata: metadata)
        } else {
            logger.debug("docker discovery refresh failed; keeping the last known nodes", metadata: metadata)
        }
    }
}

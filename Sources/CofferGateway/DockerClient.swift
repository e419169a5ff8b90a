import AsyncHTTPClient
import FoundationEssentials
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// A minimal Docker Engine API client over the daemon's unix socket (`http+unix://`), on a shared `HTTPClient`.
///
/// The API version is negotiated, never hard-coded: the first versioned request sends `GET /_ping` and uses the
/// `Api-Version` header of its answer (the newest version the daemon speaks) as the `/vX.Y` path prefix. The version
/// is cached until ``resetAPIVersion()`` (``DockerDiscovery`` calls it after a failed refresh, so a daemon restarted
/// at another version is picked up). Only `GET` is needed; bodies are JSON, read whole (at most ``maxBodySize``).
///
/// Every exchange, including reading the body, is bounded by ``requestTimeout``.
public final class DockerClient: Sendable {
    /// The unix socket of the daemon, such as `/var/run/docker.sock`.
    public let socketPath: String
    /// Longest time one exchange (request, response head and the whole body) may take.
    public let requestTimeout: Duration
    /// Larger response bodies fail with ``DockerError/Kind-swift.enum/badResponse``.
    public static let maxBodySize = 16 << 20

    let client: HTTPClient
    let logger: Logger
    private let negotiatedVersion = Mutex<String?>(nil)

    /// - Parameters:
    ///   - client: any `HTTPClient` (unix-socket connections get their own pool); the caller shuts it down.
    ///   - logger: failed exchanges are logged at debug level with `docker_socket`, `request` and `status`.
    public init(
        socketPath: String = "/var/run/docker.sock",
        client: HTTPClient,
        requestTimeout: Duration = .seconds(10),
        logger: Logger = Logger(label: "coffer.gateway.docker")
    ) {
        self.socketPath = socketPath
        self.client = client
        self.requestTimeout = requestTimeout
        var logger = logger
        logger[metadataKey: "docker_socket"] = "\(socketPath)"
        self.logger = logger
    }

    /// Asks the daemon for its API version (`GET /_ping`, header `Api-Version`) and caches it for later requests.
    ///
    /// - Returns: the version, such as `1.41`.
    /// - Errors: ``DockerError``: `.unreachable`/`.timeout` when the socket does not answer, `.status` on non-2xx,
    ///   `.badResponse` when the header is missing or is not `MAJOR.MINOR`.
    @discardableResult
    public func negotiateAPIVersion() async throws -> String {
        try await probe()
        let (head, _) = try await exchange("/_ping")
        guard let version = head.headers.first(name: "api-version"), Self.isValidVersion(version) else {
            throw DockerError(
                .badResponse, status: Int(head.status.code), request: "GET /_ping",
                message: "no valid Api-Version header in the answer to /_ping")
        }
        negotiatedVersion.withLock { $0 = version }
        return version
    }

    /// The cached API version, negotiating it first when there is none.
    ///
    /// - Errors: as ``negotiateAPIVersion()``.
    public func apiVersion() async throws -> String {
        if let version = negotiatedVersion.withLock({ $0 }) { return version }
        return try await negotiateAPIVersion()
    }

    /// Forgets the negotiated version: the next versioned request pings again.
    public func resetAPIVersion() {
        negotiatedVersion.withLock { $0 = nil }
    }

    /// `GET /vX.Y` + `path` with `query` (each name and value percent-encoded here), decoded from JSON as `T`.
    ///
    /// - Parameter path: the unversioned path, such as `/containers/json`; its segments must already be safe.
    /// - Errors: ``DockerError``: `.unreachable`, `.timeout`, `.status` (non-2xx, with the daemon's `message`) and
    ///   `.badResponse` (a body that is not the expected JSON, or too large). `CancellationError` when cancelled.
    public func get<T: Decodable>(
        _ path: String,
        query: [(name: String, value: String)] = [],
        as type: T.Type = T.self
    ) async throws -> T {
        let version = try await apiVersion()
        var uri = "/v\(version)\(path)"
        if !query.isEmpty {
            uri +=
                "?"
                + query.map { "\(Self.percentEncode($0.name))=\(Self.percentEncode($0.value))" }.joined(separator: "&")
        }
        let (head, body) = try await exchange(uri)
        do {
            return try JSONDecoder().decode(T.self, from: Data(body.readableBytesView))
        } catch {
            throw DockerError(
                .badResponse, status: Int(head.status.code), request: "GET \(uri)",
                message: "the body is not the expected JSON (\(T.self)): \(error)")
        }
    }

    /// One `GET` of `uri`, whole body collected, bounded by ``requestTimeout``; throws on a non-2xx status.
    private func exchange(_ uri: String) async throws -> (head: HTTPResponseHead, body: ByteBuffer) {
        let requestLabel = "GET \(uri)"
        let request = {
            var request = HTTPClientRequest(url: "http+unix://\(Self.percentEncode(socketPath))\(uri)")
            request.method = .GET
            // async-http-client sends no Host for a unix socket, and the daemon (Go) refuses requests without one.
            request.headers.add(name: "host", value: "localhost")
            request.headers.add(name: "accept", value: "application/json")
            // A fresh connection per request: a few requests every refresh over a local socket cost nothing, and no
            // pooled connection outlives a daemon restart or a socket that was replaced.
            request.headers.add(name: "connection", value: "close")
            return request
        }()
        let client = self.client
        let timeout = requestTimeout
        let deadline = NIODeadline.now() + TimeAmount(timeout)

        let result: (HTTPResponseHead, ByteBuffer)
        do {
            result = try await Self.withTimeout(timeout, request: requestLabel) {
                let response = try await client.execute(request, deadline: deadline)
                let body = try await response.body.collect(upTo: Self.maxBodySize)
                let head = HTTPResponseHead(
                    version: response.version, status: response.status, headers: response.headers)
                return (head, body)
            }
        } catch {
            if error is CancellationError || Task.isCancelled { throw CancellationError() }
            var failure = (error as? DockerError) ?? Self.classify(error, request: requestLabel, timeout: timeout)
            if failure.kind == .timeout {
                // async-http-client retries failed connects until the deadline: say so when the socket is the problem.
                do {
                    try await probe()
                } catch let unreachable {
                    failure = DockerError(.unreachable, request: requestLabel, message: unreachable.message)
                }
            }
            logger.debug("docker request failed", metadata: ["request": "\(requestLabel)", "error": "\(failure)"])
            throw failure
        }

        let (head, body) = result
        guard (200..<300).contains(head.status.code) else {
            let error = DockerError(
                .status, status: Int(head.status.code), request: requestLabel,
                message: Self.daemonMessage(body) ?? head.status.reasonPhrase)
            logger.debug(
                "docker request failed",
                metadata: ["request": "\(requestLabel)", "status": "\(head.status.code)", "error": "\(error.message)"])
            throw error
        }
        return (head, body)
    }
}

extension DockerClient {
    /// Connects to the socket and closes at once: fails fast (`.unreachable`) when the socket is missing or refuses,
    /// where an HTTP request would be retried by async-http-client until its deadline.
    ///
    /// - Errors: ``DockerError`` of kind `.unreachable`.
    public func probe() async throws(DockerError) {
        let socketPath = self.socketPath
        let connectTimeout = min(requestTimeout, .seconds(2))
        do {
            let channel = try await ClientBootstrap(group: client.eventLoopGroup)
                .connectTimeout(TimeAmount(connectTimeout))
                .connect(unixDomainSocketPath: socketPath).get()
            try? await channel.close()
        } catch {
            throw DockerError(
                .unreachable, request: "connect \(socketPath)",
                message: "cannot connect to the Docker socket \(socketPath): \(error)")
        }
    }

    /// Runs `operation`, failing with `.timeout` once `timeout` has passed (the operation is then cancelled).
    static func withTimeout<T: Sendable>(
        _ timeout: Duration,
        request: String,
        _ operation: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await operation() }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            if let first = try await group.next(), let value = first { return value }
            try Task.checkCancellation()
            throw DockerError(.timeout, request: request, message: "no complete answer within \(timeout)")
        }
    }

    /// Maps a transport error of async-http-client to a ``DockerError``.
    static func classify(_ error: any Error, request: String, timeout: Duration) -> DockerError {
        if error is NIOTooManyBytesError {
            return DockerError(.badResponse, request: request, message: "the body is larger than \(maxBodySize) bytes")
        }
        if let httpError = error as? HTTPClientError {
            switch httpError {
            case .deadlineExceeded, .readTimeout, .connectTimeout:
                return DockerError(.timeout, request: request, message: "no complete answer within \(timeout)")
            default:
                break
            }
        }
        return DockerError(.unreachable, request: request, message: "\(error)")
    }

    /// Docker's error bodies are `{"message": "..."}`.
    static func daemonMessage(_ body: ByteBuffer) -> String? {
        struct Message: Decodable {
            var message: String
        }
        if let decoded = try? JSONDecoder().decode(Message.self, from: Data(body.readableBytesView)) {
            return decoded.message
        }
        let text = String(buffer: body).split(whereSeparator: \.isNewline).joined(separator: " ")
        return text.allSatisfy(\.isWhitespace) ? nil : String(text.prefix(500))
    }

    /// `MAJOR.MINOR`, digits only: the version becomes part of every request path.
    static func isValidVersion(_ version: String) -> Bool {
        let parts = version.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 2 && parts.allSatisfy { !$0.isEmpty && $0.count <= 4 && $0.allSatisfy(\.isASCIIDigit) }
    }

    /// Percent-encodes every byte except RFC 3986's unreserved characters (`A-Z a-z 0-9 - . _ ~`).
    public static func percentEncode(_ string: String) -> String {
        var encoded = ""
        encoded.reserveCapacity(string.utf8.count)
        for byte in string.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
                UInt8(ascii: "~"):
                encoded.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                let hex = Array("0123456789ABCDEF".utf8)
                encoded.unicodeScalars.append("%")
                encoded.unicodeScalars.append(Unicode.Scalar(hex[Int(byte >> 4)]))
                encoded.unicodeScalars.append(Unicode.Scalar(hex[Int(byte & 0xF)]))
            }
        }
        return encoded
    }
}

extension Character {
    fileprivate var isASCIIDigit: Bool { isASCII && isWholeNumber }
}

/// A failed Docker Engine API exchange.
///
/// The message never contains container environments (credentials); it may contain the daemon's own error text.
public struct DockerError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        /// The socket could not be reached (missing, refused, reset): is the daemon running and the socket mounted?
        case unreachable
        /// No complete answer within the request timeout.
        case timeout
        /// The daemon answered a non-2xx status (``DockerError/status`` holds it).
        case status
        /// The daemon's answer was not what the API promises (bad JSON, no `Api-Version`, too large).
        case badResponse
    }

    public var kind: Kind
    /// The HTTP status, when the daemon answered.
    public var status: Int?
    /// The request, such as `GET /v1.41/containers/json?...`.
    public var request: String
    public var message: String

    public init(_ kind: Kind, status: Int? = nil, request: String, message: String) {
        self.kind = kind
        self.status = status
        self.request = request
        self.message = message
    }

    public var description: String {
        let status = status.map { " \($0)" } ?? ""
        return "Docker API \(kind)\(status) for \(request): \(message)"
    }
}

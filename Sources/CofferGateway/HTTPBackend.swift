import AsyncHTTPClient
import CofferCore
import Logging
import NIOCore
import NIOHTTP1
import Synchronization

/// A plain HTTP server as a ``Backend``: `PUT`/`GET`/`HEAD`/`DELETE` on paths under `http://host:port/prefix`, over a
/// shared `HTTPClient`. Another Coffer node (`http://node:7777/store`) or a file server
/// (`http://fs:8080/api/fileserver`).
///
/// ## Key mapping
///
/// The server is taken to use Coffer's route layout below a *base* path: the family of each key (`store/…`,
/// `object/…`, `fileserver/…`, the HTTP layer's namespaces) picks the route (`/store/`, `/object/`,
/// `/api/fileserver/`), and the rest of the key (the location) follows it. The URL's prefix is that base path, and
/// may end with one family's route, which then names the server's layout rather than adding to it:
///
/// | backend URL | key | request path |
/// |---|---|---|
/// | `http://fs:8080/api/fileserver` | `fileserver/report.pdf` | `/api/fileserver/report.pdf` |
/// | `http://node:7777/store` | `store/a/b` | `/store/a/b` |
/// | `http://node:7777/store` | `object/abc` | `/object/abc` (the node's own `/object` namespace) |
/// | `http://node:7777` | `fileserver/x` | `/api/fileserver/x` |
/// | `http://web:80/data` | `store/a` | `/data/store/a` |
///
/// The mapping is one-to-one, so the families stay separate namespaces on the backend too. A key outside the three
/// families is appended whole (`base/key`). Each segment is percent-encoded (`/` kept).
///
/// ## Answers
///
/// Statuses are classified by ``BackendError/kind(forStatus:)`` (with `Retry-After` kept for 429/503); a failure to
/// connect, a reset or a timeout is `.unavailable`. A server without an `ETag` gives objects without one
/// (``BackendObject/etag`` `nil`). A server that refuses `HEAD` (405 or 501) is asked with `GET` from then on, its
/// body discarded. Bodies stream both ways at constant memory.
///
/// The client's lifecycle belongs to the caller; see ``clientConfiguration(maxConnectionsPerBackend:timeouts:)``.
public final class HTTPBackend: Backend {
    /// The same timeouts as the S3 backend's.
    public typealias Timeouts = S3Backend.Timeouts

    public let host: String
    public let port: Int
    /// The URL's path, normalized to `/a/b` or `""`.
    public let prefix: String
    /// ``prefix`` without a trailing family route: where the route layout starts.
    public let basePath: String
    public let timeouts: Timeouts
    let client: HTTPClient
    let logger: Logger
    /// Set once the server refused a `HEAD`.
    let headUnsupported = Atomic<Bool>(false)

    /// - Parameters:
    ///   - prefix: the URL path (`/api/fileserver`, `/store`, `""`); normalized.
    ///   - client: shared by every backend; the caller shuts it down. Configure it with
    ///     ``clientConfiguration(maxConnectionsPerBackend:timeouts:)`` so that its pool allows the gate's cap.
    public init(
        host: String,
        port: Int,
        prefix: String,
        client: HTTPClient,
        timeouts: Timeouts = Timeouts(),
        logger: Logger = Logger(label: "coffer.gateway.http")
    ) {
        self.host = host
        self.port = port
        let normalized = prefix.split(separator: "/", omittingEmptySubsequences: true).map { "/" + $0 }.joined()
        self.prefix = normalized
        var base = normalized
        for route in Namespace.all.map(\.route) where normalized == route || normalized.hasSuffix(route) {
            base = String(normalized.dropLast(route.count))
            break
        }
        self.basePath = base
        self.client = client
        self.timeouts = timeouts
        var logger = logger
        logger[metadataKey: "backend"] = "http://\(S3Endpoint.hostForURL(host)):\(port)\(normalized)"
        self.logger = logger
    }

    /// A backend for an `http://` ``BackendURL``; `nil` for any other kind.
    public convenience init?(
        url: BackendURL,
        client: HTTPClient,
        timeouts: Timeouts = Timeouts(),
        logger: Logger = Logger(label: "coffer.gateway.http")
    ) {
        guard case .http(let host, let port, let prefix) = url else { return nil }
        self.init(host: host, port: port, prefix: prefix, client: client, timeouts: timeouts, logger: logger)
    }

    /// `http://host:port/prefix`, the same as ``BackendURL/id``.
    public var id: String { "http://\(S3Endpoint.hostForURL(host)):\(port)\(prefix)" }

    /// An `HTTPClient` configuration fit for the gateway's backends (S3 and HTTP alike): a pool that allows
    /// `maxConnectionsPerBackend` connections per host (async-http-client's default is 8, which would silently cap the
    /// gate lower), the connect and read timeouts of `timeouts`, no redirects, no decompression, and no retrying of a
    /// refused connection (a dead backend must fail at once, so that its breaker opens without costing latency; the
    /// gate and the store decide about retries).
    public static func clientConfiguration(
        maxConnectionsPerBackend: Int,
        timeouts: Timeouts = Timeouts()
    ) -> HTTPClient.Configuration {
        var configuration = HTTPClient.Configuration(timeout: timeouts.clientTimeout)
        configuration.redirectConfiguration = .disallow
        configuration.connectionPool = HTTPClient.Configuration.ConnectionPool(
            idleTimeout: .seconds(30),
            concurrentHTTP1ConnectionsPerHostSoftLimit: max(1, maxConnectionsPerBackend))
        configuration.connectionPool.retryConnectionEstablishment = false
        return configuration
    }

    /// The request path of `key` (see the type's key mapping), percent-encoded.
    public func path(for key: String) -> String {
        if let (namespace, location) = Namespace.split(key) {
            return basePath + namespace.route + "/" + SigV4Signer.uriEncodePath(String(location))
        }
        return basePath + "/" + SigV4Signer.uriEncodePath(key)
    }

    /// `HEAD` (or a `GET` whose body is counted and discarded, for a server that refuses `HEAD`).
    ///
    /// - Errors: ``BackendError``: `.notFound` on 404; `.invalidResponse` for a HEAD without a Content-Length.
    public func head(_ key: String) async throws -> BackendObject {
        if !headUnsupported.load(ordering: .relaxed) {
            let response = try await send(.HEAD, path: path(for: key))
            let status = Int(response.status.code)
            if status == 405 || status == 501 {
                headUnsupported.store(true, ordering: .relaxed)
                logger.info("the backend refuses HEAD; using GET instead")
            } else {
                guard (200..<300).contains(status) else { throw await failure(response, readBody: false) }
                guard let size = response.headers.first(name: "content-length").flatMap({ Int64($0) }) else {
                    throw BackendError(.invalidResponse, status: status, code: "InvalidResponse", message: "no length")
                }
                return Self.object(from: response.headers, size: size)
            }
        }
        let response = try await send(.GET, path: path(for: key))
        let status = Int(response.status.code)
        guard (200..<300).contains(status) else { throw await failure(response, readBody: true) }
        if let size = response.headers.first(name: "content-length").flatMap({ Int64($0) }) {
            // Small bodies are read to the end so the connection is reused; a large one is dropped (and closed).
            if size <= 1 << 20 { await Self.drain(response) }
            return Self.object(from: response.headers, size: size)
        }
        let (size, _) = try await measure(response.body, keepingUpTo: 0)
        return Self.object(from: response.headers, size: size)
    }

    /// `GET`, with a `Range` header when `range` is given; the body streams as the caller reads it.
    ///
    /// A body without a Content-Length (chunked) is held to `expectedSize` when the caller knows it. Otherwise one of
    /// up to ``maxUnsizedBody`` bytes is read whole; a larger one is counted to its end (discarded, constant memory)
    /// and then asked for again, held to the length counted. Either way the caller gets a length up front and a body
    /// that throws `.invalidResponse` rather than end at another length.
    ///
    /// - Errors: ``BackendError``: `.notFound`, `.rangeNotSatisfiable` (416, or a range starting at or past the
    ///   end of a server that ignored it). The body throws `.unavailable` if the connection breaks, and
    ///   `.invalidResponse` if it has another length than announced or expected.
    public func get(_ key: String, range: Range<Int64>?, expectedSize: Int64?) async throws -> BackendGet {
        if let range {
            guard range.lowerBound >= 0 else {
                throw BackendError(.rejected, code: "InvalidRange", message: "negative range \(range)")
            }
            if range.isEmpty {
                let object = try await head(key)
                guard range.lowerBound <= object.size else {
                    throw BackendError(.rangeNotSatisfiable, code: "InvalidRange", message: "\(range)")
                }
                return BackendGet(object: object, range: range, body: ByteStream { { nil } })
            }
        }
        var headers: [(name: String, value: String)] = []
        if let range {
            let last = range.upperBound == Int64.max ? "" : String(range.upperBound - 1)
            headers.append((name: "range", value: "bytes=\(range.lowerBound)-\(last)"))
        }
        var expected = expectedSize
        for _ in 0..<2 {
            let response = try await send(.GET, path: path(for: key), headers: headers)
            switch try await answer(response, range: range, expectedSize: expected) {
            case .got(let got): return got
            case .measured(let size): expected = size
            }
        }
        throw BackendError(.invalidResponse, code: "InvalidResponse", message: "no length after counting the body")
    }

    /// `PUT` of `body` (a buffer, or a stream sent once at the pace the connection takes it).
    ///
    /// - Durability: whatever the server promises once it answered 2xx (a Coffer node: fsynced).
    /// - Errors: ``BackendError``; when a streamed body itself fails, its own error; when it yields another length
    ///   than announced, ``StoreError/incompleteBody``.
    public func put(_ key: String, body: BackendBody, contentType: String?) async throws -> BackendObject {
        var headers: [(name: String, value: String)] = []
        if let contentType { headers.append((name: "content-type", value: contentType)) }
        let response = try await send(.PUT, path: path(for: key), headers: headers, body: body)
        guard (200..<300).contains(response.status.code) else { throw await failure(response, readBody: true) }
        await Self.drain(response)
        return BackendObject(
            size: body.length,
            etag: response.headers.first(name: "etag").map(S3Backend.unquote),
            lastModifiedMillis: response.headers.first(name: "last-modified").flatMap(S3Backend.parseHTTPDate),
            contentType: contentType)
    }

    /// `DELETE`.
    ///
    /// - Durability: whatever the server promises once it answered 2xx.
    /// - Errors: ``BackendError``: `.notFound` on 404.
    public func delete(_ key: String) async throws {
        let response = try await send(.DELETE, path: path(for: key))
        guard (200..<300).contains(response.status.code) else { throw await failure(response, readBody: true) }
        await Self.drain(response)
    }

    /// `GET {base}/health`: any HTTP answer (even 404 from a server without that route) proves the server is up.
    ///
    /// - Errors: ``BackendError`` `.unavailable` when no answer came.
    public func probe() async throws {
        let response = try await send(.GET, path: basePath + "/health")
        await Self.drain(response)
    }
}

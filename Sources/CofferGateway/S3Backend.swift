import AsyncHTTPClient
import CofferCore
import FoundationEssentials
import Logging
import NIOCore
import NIOHTTP1
import Synchronization

/// One bucket on an S3-compatible server (MinIO, moto, AWS in path style) as a ``Backend``, over a shared
/// `HTTPClient` and signed with AWS Signature Version 4.
///
/// Keys map to `http://host:port/bucket/KEY` with each path segment URI-encoded (`/` kept), so `object/a b` is stored
/// as the S3 key `object/a b`. Bodies stream both ways at constant memory: a streamed upload is sent with
/// `UNSIGNED-PAYLOAD` as the async-http-client pulls it, and a download's body is the client's response stream.
///
/// The bucket is created on first write when missing (``ensureBucket()``), and again if it vanished (a restarted
/// in-memory server). The client's lifecycle belongs to the caller; configure its connect and idle-read timeouts
/// from ``Timeouts/clientTimeout``, since async-http-client applies those per client, not per request.
public final class S3Backend: Backend {
    /// How long each exchange may take.
    public struct Timeouts: Sendable, Hashable {
        /// Connecting (TCP). Applied by the `HTTPClient` (see ``clientTimeout``), not per request.
        public var connect: TimeAmount
        /// From sending a request until the response head arrives; uploads get ``minimumUploadRate`` time on top.
        public var firstByte: TimeAmount
        /// Longest silence while reading a response body. Applied by the `HTTPClient` (see ``clientTimeout``).
        public var read: TimeAmount
        /// Bytes per second an upload is assumed to reach at worst: a body of `n` bytes gets
        /// `n / minimumUploadRate` seconds more than ``firstByte`` before it is abandoned.
        public var minimumUploadRate: Int64

        public init(
            connect: TimeAmount = .seconds(2),
            firstByte: TimeAmount = .seconds(30),
            read: TimeAmount = .seconds(30),
            minimumUploadRate: Int64 = 1 << 20
        ) {
            self.connect = connect
            self.firstByte = firstByte
            self.read = read
            self.minimumUploadRate = max(1, minimumUploadRate)
        }

        /// The `HTTPClient.Configuration.Timeout` that applies ``connect`` and ``read``.
        public var clientTimeout: HTTPClient.Configuration.Timeout {
            HTTPClient.Configuration.Timeout(connect: connect, read: read)
        }

        /// The deadline of one exchange whose request body is `uploadLength` bytes.
        func deadline(uploadLength: Int64) -> NIODeadline {
            let uploadNanos = uploadLength.multipliedReportingOverflow(by: 1_000_000_000)
            let extra = uploadNanos.overflow ? Int64.max / 4 : uploadNanos.partialValue / minimumUploadRate
            return .now() + firstByte + .nanoseconds(extra)
        }
    }

    /// A configuration for the shared `HTTPClient` that suits backends: ``Timeouts/clientTimeout``, no redirects,
    /// and no connect retries inside the client, so a refused connection (a dead backend) fails at once instead of
    /// after the connect timeout (the caller's retry and circuit-breaker policy decides what happens next).
    public static func clientConfiguration(timeouts: Timeouts = Timeouts()) -> HTTPClient.Configuration {
        var configuration = HTTPClient.Configuration(timeout: timeouts.clientTimeout)
        configuration.redirectConfiguration = .disallow
        configuration.connectionPool.retryConnectionEstablishment = false
        return configuration
    }

    public let endpoint: S3Endpoint
    public let timeouts: Timeouts
    let client: HTTPClient
    let signer: SigV4Signer
    let logger: Logger
    /// Whether the bucket is known to exist (set by ``ensureBucket()``, cleared when S3 says `NoSuchBucket`).
    let bucketReadyFlag = Atomic<Bool>(false)

    /// - Parameters:
    ///   - client: shared by every backend; the caller shuts it down. Its redirect following should be disabled.
    ///   - logger: request failures are logged at debug level with `backend`, `key`, `status` and `code` metadata.
    public init(
        endpoint: S3Endpoint,
        client: HTTPClient,
        timeouts: Timeouts = Timeouts(),
        logger: Logger = Logger(label: "coffer.gateway.s3")
    ) {
        self.endpoint = endpoint
        self.client = client
        self.timeouts = timeouts
        self.signer = SigV4Signer(accessKey: endpoint.accessKey, secretKey: endpoint.secretKey, region: endpoint.region)
        var logger = logger
        logger[metadataKey: "backend"] = "\(endpoint.id)"
        self.logger = logger
    }

    /// `s3://host:port/bucket`; never contains credentials.
    public var id: String { endpoint.id }

    /// HeadObject.
    ///
    /// - Errors: ``BackendError``: `.notFound` when the key or the bucket is absent.
    public func head(_ key: String) async throws -> BackendObject {
        let response = try await send(.HEAD, key: key)
        guard (200..<300).contains(response.status.code) else {
            throw await failure(response, key: key, isHead: true)
        }
        guard let size = response.headers.first(name: "content-length").flatMap({ Int64($0) }) else {
            throw BackendError(
                .invalidResponse, status: 200, code: "InvalidResponse", message: "HEAD without length")
        }
        return Self.object(from: response.headers, size: size)
    }

    /// GetObject, streaming: the returned body is the HTTP response body, pulled as the caller reads it. S3 always
    /// sends a Content-Length, so `expectedSize` is not needed.
    ///
    /// - Errors: ``BackendError``: `.notFound`, `.rangeNotSatisfiable` when `range` starts at or after the end. The
    ///   body throws `.unavailable` if the connection breaks or ends early.
    public func get(_ key: String, range: Range<Int64>?, expectedSize: Int64?) async throws -> BackendGet {
        if let range {
            guard range.lowerBound >= 0 else {
                throw BackendError(.rejected, code: "InvalidRange", message: "negative range \(range)")
            }
            if range.isEmpty { return try await emptyGet(key, at: range.lowerBound) }
        }
        var headers: [(name: String, value: String)] = []
        if let range { headers.append((name: "range", value: "bytes=\(range.lowerBound)-\(range.upperBound - 1)")) }
        let response = try await send(.GET, key: key, headers: headers)
        let status = Int(response.status.code)
        switch status {
        case 206:
            guard let contentRange = response.headers.first(name: "content-range"),
                let (served, size) = Self.parseContentRange(contentRange)
            else {
                throw BackendError(
                    .invalidResponse, status: 206, code: "InvalidResponse", message: "bad Content-Range")
            }
            let body = Self.responseStream(response.body, skip: 0, count: Int64(served.count), backend: id)
            return BackendGet(object: Self.object(from: response.headers, size: size), range: served, body: body)
        case 200..<300:
            // A whole object: either no range was asked for, or the server ignored it and we cut it here.
            guard let size = response.headers.first(name: "content-length").flatMap({ Int64($0) }) else {
                throw BackendError(.invalidResponse, status: status, code: "InvalidResponse", message: "no length")
            }
            var served = 0..<size
            if let range {
                guard range.lowerBound < size else {
                    throw BackendError(.rangeNotSatisfiable, status: status, code: "InvalidRange", message: "\(range)")
                }
                served = range.lowerBound..<min(range.upperBound, size)
            }
            let body = Self.responseStream(
                response.body, skip: served.lowerBound, count: Int64(served.count), backend: id)
            return BackendGet(object: Self.object(from: response.headers, size: size), range: served, body: body)
        default:
            throw await failure(response, key: key, isHead: false)
        }
    }

    /// A read of no bytes at `offset`: a HEAD, so the object's metadata and existence are still checked.
    private func emptyGet(_ key: String, at offset: Int64) async throws -> BackendGet {
        let object = try await head(key)
        guard offset <= object.size else {
            throw BackendError(.rangeNotSatisfiable, code: "InvalidRange", message: "offset \(offset) > \(object.size)")
        }
        return BackendGet(object: object, range: offset..<offset, body: ByteStream { { nil } })
    }

    /// PutObject. A `.buffer` body is signed with its SHA-256 (and resent once if the bucket had to be re-created);
    /// a `.stream` body is sent once, as `UNSIGNED-PAYLOAD`, at the pace the connection takes it.
    ///
    /// - Durability: whatever the server promises once it answered 2xx (MinIO: written to its drives).
    /// - Errors: ``BackendError`` (`.unavailable` with code `NoSuchBucket` for a stream that found the bucket gone;
    ///   the bucket is re-created, so a retry succeeds). When a streamed body itself fails, its own error is
    ///   rethrown; when it ends before `length` bytes or runs past them, ``StoreError/incompleteBody`` (neither is
    ///   the backend's fault).
    public func put(_ key: String, body: BackendBody, contentType: String?) async throws -> BackendObject {
        if !bucketReadyFlag.load(ordering: .acquiring) { try await ensureBucket() }
        var headers: [(name: String, value: String)] = []
        // Some S3 servers (moto, anything on a form-parsing web framework) consume form-typed bodies as form fields
        // and store nothing: such a type travels as metadata, and the object itself is typed as octet-stream.
        if let contentType, Self.isFormType(contentType) {
            headers.append((name: "content-type", value: BlobInfo.defaultContentType))
            headers.append((name: Self.contentTypeMetadata, value: contentType))
        } else if let contentType {
            headers.append((name: "content-type", value: contentType))
        }
        do {
            return try await putOnce(key, body: body, headers: headers, contentType: contentType)
        } catch let error as BackendError where error.code == "NoSuchBucket" {
            // The bucket vanished (an in-memory server restarted): create it again, then resend a buffer; a stream
            // is gone, so the write fails as `.unavailable` and a retry by the caller will find the bucket.
            logger.info("bucket vanished, creating it again", metadata: ["key": "\(key)"])
            try await ensureBucket()
            guard case .buffer = body else {
                throw BackendError(
                    .unavailable, status: error.status, code: error.code,
                    message: "the bucket was missing and has been created again; the streamed body cannot be resent")
            }
            return try await putOnce(key, body: body, headers: headers, contentType: contentType)
        }
    }

    private func putOnce(
        _ key: String,
        body: BackendBody,
        headers: [(name: String, value: String)],
        contentType: String?
    ) async throws -> BackendObject {
        let payload: Payload =
            switch body {
            case .buffer(let buffer): .buffer(buffer)
            case .stream(let length, let stream): .stream(length: length, UploadTracker(stream, length: length))
            }
        let response = try await send(.PUT, key: key, headers: headers, payload: payload)
        guard (200..<300).contains(response.status.code) else {
            throw await failure(response, key: key, isHead: false)
        }
        await Self.drain(response)
        let etag = response.headers.first(name: "etag").map(Self.unquote)
        return BackendObject(size: body.length, etag: etag, lastModifiedMillis: nil, contentType: contentType)
    }

    /// The metadata header that carries a form content type (see ``put(_:body:contentType:)``).
    static let contentTypeMetadata = "x-amz-meta-coffer-content-type"

    static func isFormType(_ contentType: String) -> Bool {
        let lowered = contentType.lowercased()
        return lowered.hasPrefix("application/x-www-form-urlencoded") || lowered.hasPrefix("multipart/form-data")
    }

    /// DeleteObject. An absent key (or bucket) counts as deleted.
    ///
    /// - Durability: whatever the server promises once it answered 2xx.
    /// - Errors: ``BackendError``.
    public func delete(_ key: String) async throws {
        let response = try await send(.DELETE, key: key)
        guard (200..<300).contains(response.status.code) else {
            let error = await failure(response, key: key, isHead: false)
            if error.code == "NoSuchKey" { return }
            if error.code == "NoSuchBucket" {
                markBucketMissing()
                return
            }
            throw error
        }
        await Self.drain(response)
    }

    /// HEAD on the bucket: any 2xx, or 404 (the bucket will be created on first write), proves the server answers.
    ///
    /// - Errors: ``BackendError``: `.unavailable` when unreachable, `.rejected` for wrong credentials (403).
    public func probe() async throws {
        let response = try await send(.HEAD, key: nil)
        let status = response.status.code
        if status == 404 {
            markBucketMissing()
            return
        }
        guard (200..<300).contains(status) else { throw await failure(response, key: nil, isHead: true) }
    }

    /// Makes sure the bucket exists: HEAD bucket, then CreateBucket when it answered 404. `BucketAlreadyOwnedByYou`
    /// (a concurrent creation) counts as success. ``put(_:body:contentType:)`` calls it before its first write and
    /// after S3 reported `NoSuchBucket`; callers may call it earlier to fail fast.
    ///
    /// - Errors: ``BackendError``.
    public func ensureBucket() async throws {
        let head = try await send(.HEAD, key: nil)
        if (200..<300).contains(head.status.code) {
            bucketReadyFlag.store(true, ordering: .releasing)
            return
        }
        // 403 without a body says nothing about why (wrong key, or a user who may write objects but not list the
        // bucket): CreateBucket answers with an S3 error code that tells.
        let forbidden = head.status.code == 403
        guard head.status.code == 404 || forbidden else { throw await failure(head, key: nil, isHead: true) }

        var body = ByteBuffer()
        if endpoint.region != S3Endpoint.defaultRegion {
            body.writeString(
                "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LocationConstraint>"
                    + endpoint.region + "</LocationConstraint></CreateBucketConfiguration>")
        }
        let create = try await send(.PUT, key: nil, payload: .buffer(body))
        if (200..<300).contains(create.status.code) {
            await Self.drain(create)
            logger.info("created bucket", metadata: ["bucket": "\(endpoint.bucket)"])
        } else {
            let error = await failure(create, key: nil, isHead: false)
            switch error.code {
            case "BucketAlreadyOwnedByYou":
                break
            case "AccessDenied" where forbidden:
                // Neither HeadBucket nor CreateBucket allowed: let the writes themselves find out.
                logger.debug("may neither list nor create the bucket; assuming it exists")
            case "BucketAlreadyExists":
                // Ours if we can read it (some servers say this for our own bucket); someone else's otherwise.
                let again = try await send(.HEAD, key: nil)
                guard (200..<300).contains(again.status.code) else { throw error }
            default:
                throw error
            }
        }
        bucketReadyFlag.store(true, ordering: .releasing)
    }
}

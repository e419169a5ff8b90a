import AsyncHTTPClient
import CofferCore
import NIOCore
import NIOHTTP1

// Sending one request and reading what came back.
extension HTTPBackend {
    /// Sends one request and returns the response head (its body still to read), whatever its status.
    ///
    /// - Errors: ``BackendError`` `.unavailable` when no response came (refused, reset, timed out);
    ///   `CancellationError`; a streamed body's own error, or ``StoreError/incompleteBody`` for a wrong length.
    func send(
        _ method: HTTPMethod,
        path: String,
        headers: [(name: String, value: String)] = [],
        body: BackendBody? = nil
    ) async throws -> HTTPClientResponse {
        var request = HTTPClientRequest(url: "http://\(S3Endpoint.hostForURL(host)):\(port)\(path)")
        request.method = method
        for header in headers { request.headers.add(name: header.name, value: header.value) }
        var tracker: UploadTracker?
        switch body {
        case nil: break
        case .buffer(let buffer): request.body = .bytes(buffer)
        case .stream(let length, let stream):
            let made = UploadTracker(stream, length: length)
            tracker = made
            request.body = .stream(made.sequence, length: .known(length))
        }
        do {
            return try await client.execute(
                request, deadline: timeouts.deadline(uploadLength: body?.length ?? 0), logger: logger)
        } catch {
            if let tracker, let bodyError = tracker.bodyError(after: error) { throw bodyError }
            if Task.isCancelled { throw CancellationError() }
            let mapped = S3Backend.transportError(error)
            logger.debug(
                "request failed",
                metadata: ["method": "\(method.rawValue)", "path": "\(path)", "code": "\(mapped.code)"])
            throw mapped
        }
    }

    /// What a GET's response gave: the object, or only its length (a body without one, too large to keep, counted
    /// to its end so the request can be sent again with the length known).
    enum Answer {
        case got(BackendGet)
        case measured(Int64)
    }

    /// The ``Answer`` to a GET's `response` (see ``get(_:range:expectedSize:)``).
    func answer(_ response: HTTPClientResponse, range: Range<Int64>?, expectedSize: Int64?) async throws -> Answer {
        let status = Int(response.status.code)
        switch status {
        case 206:
            guard let contentRange = response.headers.first(name: "content-range"),
                let (served, size) = S3Backend.parseContentRange(contentRange)
            else {
                throw BackendError(
                    .invalidResponse, status: 206, code: "InvalidResponse", message: "bad Content-Range")
            }
            let body = S3Backend.responseStream(response.body, skip: 0, count: Int64(served.count), backend: id)
            return .got(BackendGet(object: Self.object(from: response.headers, size: size), range: served, body: body))
        case 200..<300:
            let announced = response.headers.first(name: "content-length").flatMap { Int64($0) }
            var collected: ByteBuffer?
            let total: Int64
            if let size = announced ?? expectedSize {
                total = size
            } else {
                let (size, bytes) = try await measure(response.body, keepingUpTo: Self.maxUnsizedBody)
                guard let bytes else { return .measured(size) }
                total = size
                collected = bytes
            }
            var served = 0..<total
            if let range {
                guard range.lowerBound < total else {
                    throw BackendError(.rangeNotSatisfiable, status: status, code: "InvalidRange", message: "\(range)")
                }
                served = range.lowerBound..<min(range.upperBound, total)
            }
            let object = Self.object(from: response.headers, size: total)
            if let collected {
                let slice = collected.getSlice(
                    at: collected.readerIndex + Int(served.lowerBound), length: served.count)!
                return .got(BackendGet(object: object, range: served, body: Self.single(slice)))
            }
            // Held to the length only where the backend did not announce it (a whole-body answer, not cut down).
            let exact = announced == nil && served == 0..<total
            let stream = S3Backend.responseStream(
                response.body, skip: served.lowerBound, count: Int64(served.count), backend: id, exact: exact)
            return .got(BackendGet(object: object, range: served, body: stream))
        default:
            throw await failure(response, readBody: true)
        }
    }

    /// Reads `body` to its end, counting its bytes and keeping them while there are at most `limit`: the length,
    /// and the bytes when they were kept. Memory stays under `limit` however long the body.
    ///
    /// - Errors: ``BackendError`` `.unavailable` when the connection breaks.
    func measure(_ body: HTTPClientResponse.Body, keepingUpTo limit: Int) async throws -> (Int64, ByteBuffer?) {
        var kept: ByteBuffer? = ByteBuffer()
        var total: Int64 = 0
        do {
            for try await chunk in body {
                total += Int64(chunk.readableBytes)
                if total <= Int64(limit) {
                    kept?.writeImmutableBuffer(chunk)
                } else {
                    kept = nil
                }
            }
        } catch {
            if Task.isCancelled { throw CancellationError() }
            var mapped = S3Backend.transportError(error)
            mapped.message = "\(id): the body broke after \(total) bytes: \(error)"
            throw mapped
        }
        return (total, kept)
    }

    /// The largest body without Content-Length that ``answer(_:range:expectedSize:)`` keeps in memory; larger ones
    /// are counted, then asked for again.
    static var maxUnsizedBody: Int { 8 << 20 }

    /// The classified error of a non-2xx `response`, with (the start of) its body as the message.
    func failure(_ response: HTTPClientResponse, readBody: Bool) async -> BackendError {
        let status = Int(response.status.code)
        var text = ""
        if readBody, let body = try? await response.body.collect(upTo: 64 * 1024) {
            text = String(buffer: body)
        }
        let kind = BackendError.kind(forStatus: status)
        let retryAfter =
            kind == .throttled ? response.headers.first(name: "retry-after").flatMap(S3Backend.parseRetryAfter) : nil
        logger.debug("backend error", metadata: ["status": "\(status)", "body": "\(text.prefix(200))"])
        return BackendError(
            kind, status: status, code: "HTTP\(status)",
            message: text.isEmpty ? "HTTP \(status)" : String(text.prefix(200)), retryAfterSeconds: retryAfter)
    }

    /// Reads the rest of a (small) response body so the connection can be reused.
    static func drain(_ response: HTTPClientResponse) async {
        _ = try? await response.body.collect(upTo: 1 << 20)
    }

    /// The metadata in a HEAD or GET response.
    static func object(from headers: HTTPHeaders, size: Int64) -> BackendObject {
        BackendObject(
            size: size,
            etag: headers.first(name: "etag").map(S3Backend.unquote),
            lastModifiedMillis: headers.first(name: "last-modified").flatMap(S3Backend.parseHTTPDate),
            contentType: headers.first(name: "content-type"))
    }

    /// A stream of one buffer.
    static func single(_ buffer: ByteBuffer) -> ByteStream {
        ByteStream {
            let once = OnceFlag()
            return { once.take() && buffer.readableBytes > 0 ? buffer : nil }
        }
    }
}

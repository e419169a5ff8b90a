import AsyncHTTPClient
import CofferCore
import NIOCore
import Synchronization

// Streaming bodies: a download's response body as a ByteStream, an upload's ByteStream as the request body.
extension S3Backend {
    /// `body` as a single-pass ``ByteStream`` of exactly `count` bytes after skipping the first `skip`. Chunks are
    /// pulled from the connection as the consumer asks for them (async-http-client's backpressure), so memory stays
    /// constant however large the object is; dropping the stream cancels the download.
    ///
    /// The stream throws ``BackendError`` `.unavailable` when the connection fails or the body ends early. With
    /// `exact` (a body whose length the backend did not announce, held to the length the caller knows), a body that
    /// ends before `skip + count` bytes or goes on past them throws `.invalidResponse` instead: the answer cannot be
    /// the object.
    static func responseStream(
        _ body: HTTPClientResponse.Body,
        skip: Int64,
        count: Int64,
        backend: String,
        exact: Bool = false
    ) -> ByteStream {
        let reader = ResponseBodyReader(body: body, skip: skip, count: count, backend: backend, exact: exact)
        return ByteStream {
            guard reader.claim() else {
                return {
                    throw BackendError(
                        .unavailable, code: "BodyAlreadyRead", message: "a backend body can be iterated only once")
                }
            }
            return { try await reader.next() }
        }
    }
}

/// Reads one response body for ``S3Backend/responseStream(_:skip:count:backend:)``.
///
/// `@unchecked Sendable`: the mutable state is touched only by ``next()``, which the single consumer of the stream
/// calls one at a time (an `AsyncIterator`'s contract); ``claim()`` makes sure there is only one consumer.
final class ResponseBodyReader: @unchecked Sendable {
    private let claimed = Atomic<Bool>(false)
    private var body: HTTPClientResponse.Body?
    private var iterator: HTTPClientResponse.Body.AsyncIterator?
    private var toSkip: Int64
    private var remaining: Int64
    private var finished = false
    private let backend: String
    private let exact: Bool

    init(body: HTTPClientResponse.Body, skip: Int64, count: Int64, backend: String, exact: Bool) {
        self.body = body
        self.toSkip = skip
        self.remaining = count
        self.backend = backend
        self.exact = exact
    }

    /// `true` exactly once.
    func claim() -> Bool {
        claimed.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged
    }

    func next() async throws -> ByteBuffer? {
        if iterator == nil, let body {
            iterator = body.makeAsyncIterator()
            self.body = nil
        }
        guard !finished, var iterator else { return nil }
        defer { self.iterator = finished ? nil : iterator }
        while true {
            if remaining == 0 {
                // Reach the end of the response (normally at once) so the connection goes back to the pool; any
                // extra bytes of a whole-object answer that was cut down to a range are dropped with the request.
                let extra = try? await iterator.next()
                finished = true
                if exact, let extra, extra.readableBytes > 0 {
                    throw BackendError(
                        .invalidResponse, code: "WrongLength", message: "\(backend): the body is longer than the object"
                    )
                }
                return nil
            }
            let chunk: ByteBuffer?
            do {
                chunk = try await iterator.next()
            } catch {
                if Task.isCancelled { throw CancellationError() }
                throw BackendError(
                    .unavailable, code: S3Backend.transportError(error).code,
                    message: "\(backend): the body broke with \(remaining) bytes to go: \(error)")
            }
            guard var chunk else {
                throw BackendError(
                    exact ? .invalidResponse : .unavailable, code: exact ? "WrongLength" : "IncompleteBody",
                    message: "\(backend): the body ended \(remaining) bytes early")
            }
            if toSkip > 0 {
                let skipped = min(Int64(chunk.readableBytes), toSkip)
                chunk.moveReaderIndex(forwardBy: Int(skipped))
                toSkip -= skipped
            }
            if Int64(chunk.readableBytes) > remaining {
                if exact {
                    throw BackendError(
                        .invalidResponse, code: "WrongLength", message: "\(backend): the body is longer than the object"
                    )
                }
                chunk = chunk.getSlice(at: chunk.readerIndex, length: Int(remaining))!
            }
            guard chunk.readableBytes > 0 else { continue }
            remaining -= Int64(chunk.readableBytes)
            return chunk
        }
    }
}

/// Wraps an upload's ``ByteStream`` for async-http-client: counts the bytes it yields and remembers an error it threw,
/// so that a failed request can be blamed on the body (the client's fault) rather than on the backend.
final class UploadTracker: Sendable {
    private struct State {
        var bytes: Int64 = 0
        var failure: (any Error)?
    }

    private let state = Mutex(State())
    private let stream: ByteStream
    let length: Int64

    init(_ stream: ByteStream, length: Int64) {
        self.stream = stream
        self.length = length
    }

    /// The body to hand to async-http-client.
    var sequence: Body { Body(base: stream, tracker: self) }

    /// The error to throw for a request that failed with `requestError`, when the body is to blame: the body's own
    /// error, or ``StoreError/incompleteBody`` when it yielded a different number of bytes than announced.
    func bodyError(after requestError: any Error) -> (any Error)? {
        let (bytes, failure) = state.withLock { ($0.bytes, $0.failure) }
        if let failure { return failure }
        if let clientError = requestError as? HTTPClientError, clientError == .bodyLengthMismatch {
            return StoreError.incompleteBody.with(
                message: "the upload body yielded \(bytes) bytes so far, not the \(length) announced")
        }
        return nil
    }

    struct Body: AsyncSequence, Sendable {
        typealias Element = ByteBuffer
        let base: ByteStream
        let tracker: UploadTracker

        func makeAsyncIterator() -> Iterator { Iterator(base: base.makeAsyncIterator(), tracker: tracker) }

        struct Iterator: AsyncIteratorProtocol {
            var base: ByteStream.AsyncIterator
            let tracker: UploadTracker

            mutating func next() async throws -> ByteBuffer? {
                do {
                    let chunk = try await base.next()
                    if let chunk { tracker.state.withLock { $0.bytes += Int64(chunk.readableBytes) } }
                    return chunk
                } catch {
                    tracker.state.withLock { $0.failure = error }
                    throw error
                }
            }
        }
    }
}

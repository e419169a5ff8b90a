import NIOCore

/// A request's body as the ``RequestProcessor`` gets it.
enum RequestBody: Sendable {
    case none
    /// Read in full by the handler before the request started: small bodies of announced length (see
    /// ``BlobHTTPHandler/bufferedBodyLimit``), which then cost no stream, no backpressure and no task switch per part.
    case buffered(ByteBuffer)
    /// Pulled by the store part by part; the handler stops reading the socket while the store is behind.
    case streamed(BlobHTTPHandler.BodySequence)
}

/// A body already in memory, as the sequence `BlobStore.write` takes: its bytes once, or nothing when empty.
struct BufferedBody: AsyncSequence, Sendable {
    let buffer: ByteBuffer

    struct AsyncIterator: AsyncIteratorProtocol {
        var buffer: ByteBuffer?

        mutating func next() async throws -> ByteBuffer? {
            defer { buffer = nil }
            return buffer
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(buffer: buffer.readableBytes > 0 ? buffer : nil) }
}

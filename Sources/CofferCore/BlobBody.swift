import NIOCore

/// The bytes of a read: either already in memory (and verified), or a stream that verifies as it goes.
public enum BlobBody: Sendable {
    /// The whole selected range, already read and checksum-verified.
    case buffer(ByteBuffer)
    /// Chunks pulled on demand; a chunk is only yielded after it was verified. The stream throws
    /// ``StoreError/corrupt`` (or ``StoreError/io``) instead of yielding bad bytes: a consumer that already sent
    /// a prefix must abort the transfer rather than complete it.
    case stream(ByteStream)
}

/// A pull-based, single-pass sequence of byte chunks: the consumer's pace is the producer's pace, so a slow
/// client never makes the store read ahead (constant memory).
public struct ByteStream: AsyncSequence, Sendable {
    public typealias Element = ByteBuffer

    private let makeNext: @Sendable () -> (@Sendable () async throws -> ByteBuffer?)

    /// `makeNext` is called once per iteration and returns the function that yields the next chunk or `nil` at end.
    public init(_ makeNext: @escaping @Sendable () -> (@Sendable () async throws -> ByteBuffer?)) {
        self.makeNext = makeNext
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        let next: @Sendable () async throws -> ByteBuffer?
        public mutating func next() async throws -> ByteBuffer? { try await next() }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(next: makeNext()) }
}

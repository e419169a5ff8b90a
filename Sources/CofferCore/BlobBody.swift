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
    /// When the bytes sit contiguous in one file: a consumer that can send straight from a file (sendfile) may use
    /// this instead of iterating. Either way gives the same bytes, verified the same way.
    public let file: FileSlices?

    /// `makeNext` is called once per iteration and returns the function that yields the next chunk or `nil` at end.
    public init(
        file: FileSlices? = nil, _ makeNext: @escaping @Sendable () -> (@Sendable () async throws -> ByteBuffer?)
    ) {
        self.makeNext = makeNext
        self.file = file
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        let next: @Sendable () async throws -> ByteBuffer?
        public mutating func next() async throws -> ByteBuffer? { try await next() }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(next: makeNext()) }
}

/// The bytes of a stream as a range of one file, to be sent slice by slice without passing through user memory.
///
/// A consumer must call ``verify`` on each slice before it sends that slice; `verify` throws ``StoreError/corrupt``
/// (or ``StoreError/io``) instead of letting bad bytes go out, like a stream's iteration does.
public struct FileSlices: Sendable {
    /// The file offsets of the bytes.
    public let range: Range<Int64>
    /// The preferred slice length; slices should start at multiples of it (relative to offset 0 of the file).
    public let sliceSize: Int
    /// Returns a new descriptor of the file, open for reading, which the caller owns and closes.
    public let duplicateDescriptor: @Sendable () throws -> CInt
    /// Checks the bytes of a slice (file offsets within ``range``) against their checksums. May block on I/O, so it
    /// runs on the store's own threads.
    public let verify: @Sendable (Range<Int64>) async throws -> Void

    public init(
        range: Range<Int64>,
        sliceSize: Int,
        duplicateDescriptor: @escaping @Sendable () throws -> CInt,
        verify: @escaping @Sendable (Range<Int64>) async throws -> Void
    ) {
        self.range = range
        self.sliceSize = sliceSize
        self.duplicateDescriptor = duplicateDescriptor
        self.verify = verify
    }
}

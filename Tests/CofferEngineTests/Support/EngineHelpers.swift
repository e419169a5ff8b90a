import CofferCore
import CofferEngineTesting
import CofferTestKit
import Logging
import NIOCore

@testable import CofferEngine

/// A logger that drops everything: recovery and failure paths log on purpose in these tests.
let quietLogger = Logger(label: "coffer.engine.tests", factory: { _ in SwiftLogNoOpLogHandler() })

/// The inline threshold most tests use: small, so spill files stay small and tests stay fast.
let testInlineThreshold = 4096

/// A configuration for tests: small inline threshold, two I/O threads.
func testConfiguration(
    _ directory: TestDirectory, fileIO: (any FileIO)? = nil, _ tweak: (inout EngineConfiguration) -> Void = { _ in }
) -> EngineConfiguration {
    var configuration = EngineConfiguration(directory: directory.path)
    configuration.inlineThreshold = testInlineThreshold
    configuration.ioThreads = 2
    if let fileIO { configuration.fileIO = fileIO }
    tweak(&configuration)
    return configuration
}

func openEngine(_ configuration: EngineConfiguration) async throws -> LogEngine {
    try await LogEngine.open(configuration, logger: quietLogger)
}

/// Opens an engine, runs `body`, and closes the engine whether `body` throws or not.
func withEngine<T>(_ configuration: EngineConfiguration, _ body: (LogEngine) async throws -> T) async throws -> T {
    let engine = try await openEngine(configuration)
    do {
        let result = try await body(engine)
        try await engine.close()
        return result
    } catch {
        try? await engine.close()
        throw error
    }
}

func key(_ raw: String) -> BlobKey {
    BlobKey(raw)!
}

extension LogEngine {
    /// Writes `bytes` in chunks of `chunkSize`.
    @discardableResult
    func put(
        _ raw: String, _ bytes: [UInt8], chunkSize: Int = 16 * 1024, options: WriteOptions = WriteOptions()
    ) async throws -> WriteResult {
        try await write(key(raw), body: ChunkedBody(bytes, chunkSize: chunkSize), options: options)
    }

    /// Reads the whole blob (or the selected range) and collects the body.
    func get(_ raw: String, options: ReadOptions = ReadOptions()) async throws -> [UInt8] {
        let result = try await read(key(raw), options: options)
        return try await collect(result.body)
    }

    /// `nil` when the key reads as not found; other errors are thrown.
    func getIfPresent(_ raw: String) async throws -> [UInt8]? {
        do {
            return try await get(raw)
        } catch let error as StoreError where error == .notFound {
            return nil
        }
    }

    func remove(_ raw: String, condition: WriteCondition = .none) async throws -> BlobInfo {
        try await delete(key(raw), condition: condition)
    }
}

/// All bytes of a read body (empty for `nil`).
func collect(_ body: BlobBody?) async throws -> [UInt8] {
    switch body {
    case nil:
        return []
    case .buffer(let buffer):
        return Array(buffer.readableBytesView)
    case .stream(let stream):
        var out: [UInt8] = []
        for try await chunk in stream { out.append(contentsOf: chunk.readableBytesView) }
        return out
    }
}

/// Collects a streamed body chunk by chunk, returning what arrived before the stream threw (and the error).
func collectUntilError(_ body: BlobBody?) async -> (bytes: [UInt8], error: (any Error)?) {
    let stream: ByteStream
    switch body {
    case nil: return ([], nil)
    case .buffer(let buffer): return (Array(buffer.readableBytesView), nil)
    case .stream(let chunks): stream = chunks
    }
    var out: [UInt8] = []
    do {
        for try await chunk in stream { out.append(contentsOf: chunk.readableBytesView) }
    } catch {
        return (out, error)
    }
    return (out, nil)
}

/// A body delivered in chunks; optionally throws before chunk `failAt`, and calls `onEnd` when it ends normally.
struct ChunkedBody: AsyncSequence, Sendable {
    typealias Element = ByteBuffer

    let bytes: [UInt8]
    let chunkSizes: [Int]
    var failAt: Int?
    var onEnd: (@Sendable () -> Void)?

    init(_ bytes: [UInt8], chunkSize: Int = 16 * 1024, failAt: Int? = nil, onEnd: (@Sendable () -> Void)? = nil) {
        self.init(bytes, chunkSizes: [Swift.max(1, chunkSize)], failAt: failAt, onEnd: onEnd)
    }

    /// Chunk sizes cycle through `chunkSizes`.
    init(_ bytes: [UInt8], chunkSizes: [Int], failAt: Int? = nil, onEnd: (@Sendable () -> Void)? = nil) {
        self.bytes = bytes
        self.chunkSizes = chunkSizes
        self.failAt = failAt
        self.onEnd = onEnd
    }

    struct AsyncIterator: AsyncIteratorProtocol {
        let body: ChunkedBody
        var offset = 0
        var chunk = 0

        mutating func next() async throws -> ByteBuffer? {
            if let failAt = body.failAt, chunk >= failAt { throw BodyFailure() }
            guard offset < body.bytes.count else {
                body.onEnd?()
                return nil
            }
            let size = Swift.min(body.chunkSizes[chunk % body.chunkSizes.count], body.bytes.count - offset)
            defer {
                offset += size
                chunk += 1
            }
            return ByteBuffer(bytes: body.bytes[offset..<(offset + size)])
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(body: self) }
}

/// What a ``ChunkedBody`` throws when told to fail.
struct BodyFailure: Error {}

/// Deterministic pseudo-random bytes from the engine's `SplitMix64`, so every run writes the same data.
extension SplitMix64 {
    mutating func bytes(_ count: Int) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(count + 8)
        while out.count < count {
            let word = next()
            for shift in stride(from: 0, to: 64, by: 8) { out.append(UInt8(truncatingIfNeeded: word >> shift)) }
        }
        out.removeLast(out.count - count)
        return out
    }
}

/// `count` pseudo-random bytes determined by `seed`.
func randomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var generator = SplitMix64(seed: seed)
    return generator.bytes(count)
}

/// Lowercase hex of `bytes`.
func hex(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef")
    return String(bytes.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 0x0F)]] })
}

/// Bytes of a hex string (two digits per byte).
func bytes(hex: String) -> [UInt8] {
    var out: [UInt8] = []
    var index = hex.startIndex
    while index < hex.endIndex {
        let next = hex.index(index, offsetBy: 2)
        out.append(UInt8(hex[index..<next], radix: 16)!)
        index = next
    }
    return out
}

extension LogEngine {
    /// The index entry of the key spelled `key` (tests name keys as strings).
    func lookup(_ key: String) -> IndexEntry? { lookup(BlobKey(key)!) }
}

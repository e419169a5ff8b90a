import AsyncHTTPClient
import CofferCore
import Crypto
import Foundation
import NIOCore
import Synchronization
import Testing

@testable import CofferGateway

/// Runs `body` with an ``S3Backend`` on `moto`, over an `HTTPClient` of its own (shut down afterwards) made with
/// ``S3Backend/clientConfiguration(timeouts:)``.
func withBackend<T>(
    _ moto: MotoServer,
    bucket: String = "coffer",
    accessKey: String = "testing",
    secretKey: String = "testing",
    timeouts: S3Backend.Timeouts = S3Backend.Timeouts(),
    _ body: (S3Backend) async throws -> T
) async throws -> T {
    try await withBackend(
        endpoint: moto.endpoint(bucket: bucket, accessKey: accessKey, secretKey: secretKey), timeouts: timeouts, body)
}

/// Runs `body` with an ``S3Backend`` on `endpoint`, over an `HTTPClient` of its own (shut down afterwards).
func withBackend<T>(
    endpoint: S3Endpoint,
    timeouts: S3Backend.Timeouts = S3Backend.Timeouts(),
    _ body: (S3Backend) async throws -> T
) async throws -> T {
    let client = HTTPClient(
        eventLoopGroup: .singletonMultiThreadedEventLoopGroup,
        configuration: S3Backend.clientConfiguration(timeouts: timeouts))
    let backend = S3Backend(endpoint: endpoint, client: client, timeouts: timeouts)
    do {
        let result = try await body(backend)
        try await client.shutdown()
        return result
    } catch {
        try? await client.shutdown()
        throw error
    }
}

/// Expects `body` to throw a ``BackendError`` of `kind` (within `limit`, when given) and returns it.
@discardableResult
func expectBackendError(
    _ kind: BackendError.Kind,
    within limit: Duration? = nil,
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () async throws -> Void
) async -> BackendError? {
    let start = ContinuousClock.now
    do {
        try await body()
        Issue.record("expected a \(kind) BackendError, nothing was thrown", sourceLocation: sourceLocation)
        return nil
    } catch let error as BackendError {
        let elapsed = ContinuousClock.now - start
        #expect(error.kind == kind, "\(error)", sourceLocation: sourceLocation)
        if let limit {
            #expect(elapsed < limit, "took \(elapsed) to fail with \(error)", sourceLocation: sourceLocation)
        }
        return error
    } catch {
        Issue.record("expected a \(kind) BackendError, got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

/// Test bytes, streams and digests.
enum S3TestData {
    /// `count` pseudo-random bytes (xorshift64*), the same for the same seed.
    static func bytes(_ count: Int, seed: UInt64) -> [UInt8] {
        var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        var out = [UInt8](repeating: 0, count: count)
        out.withUnsafeMutableBytes { raw in
            var index = 0
            while index < count {
                state ^= state >> 12
                state ^= state << 25
                state ^= state >> 27
                var word = state &* 0x2545_F491_4F6C_DD1D
                let take = min(8, count - index)
                withUnsafeBytes(of: &word) {
                    raw.baseAddress!.advanced(by: index).copyMemory(from: $0.baseAddress!, byteCount: take)
                }
                index += take
            }
        }
        return out
    }

    /// `bytes` as a ``ByteStream`` of `chunkSize` chunks.
    static func stream(_ bytes: [UInt8], chunkSize: Int) -> ByteStream {
        let chunks = stride(from: 0, to: bytes.count, by: chunkSize).map {
            ByteBuffer(bytes: bytes[$0..<min($0 + chunkSize, bytes.count)])
        }
        return ByteStream {
            let next = ManagedCounter()
            return {
                let index = next.increment() - 1
                return index < chunks.count ? chunks[index] : nil
            }
        }
    }

    /// `block` repeated `times` times, as a stream of one buffer per repetition.
    static func repeating(_ block: [UInt8], times: Int) -> ByteStream {
        let buffer = ByteBuffer(bytes: block)
        return ByteStream {
            let next = ManagedCounter()
            return { next.increment() <= times ? buffer : nil }
        }
    }

    /// A stream of `count` chunks of `chunkSize` bytes, generated on demand (one random block, each chunk stamped with
    /// its index so that chunks differ), digested as it is read, and sampling the RSS at every chunk.
    static func stream(
        chunkSize: Int, count: Int, seed: UInt64, rss: RSSMonitor
    ) -> (stream: ByteStream, digest: StreamDigest) {
        let block = bytes(chunkSize, seed: seed)
        let digest = StreamDigest()
        let stream = ByteStream {
            let next = ManagedCounter()
            return {
                let index = next.increment() - 1
                guard index < count else { return nil }
                var chunk = ByteBuffer(bytes: block)
                chunk.setInteger(UInt64(index), at: 0)
                digest.update(chunk)
                rss.sample()
                return chunk
            }
        }
        return (stream, digest)
    }

    static func collect(_ stream: ByteStream) async throws -> [UInt8] {
        var out: [UInt8] = []
        for try await chunk in stream { out += chunk.readableBytesView }
        return out
    }

    static func sha256Hex(_ bytes: [UInt8]) -> String { hex(SHA256.hash(data: bytes)) }
    static func md5Hex(_ bytes: [UInt8]) -> String { hex(Insecure.MD5.hash(data: bytes)) }
    static func hex(_ digest: some Sequence<UInt8>) -> String { digest.map { String(format: "%02x", $0) }.joined() }
}

/// SHA-256 and MD5 of the bytes that went through a stream.
final class StreamDigest: Sendable {
    private let state = Mutex((sha256: SHA256(), md5: Insecure.MD5()))

    func update(_ buffer: ByteBuffer) {
        state.withLock { state in
            buffer.withUnsafeReadableBytes {
                state.sha256.update(bufferPointer: $0)
                state.md5.update(bufferPointer: $0)
            }
        }
    }

    func finish() -> (sha256: String, md5: String) {
        state.withLock { (S3TestData.hex($0.sha256.finalize()), S3TestData.hex($0.md5.finalize())) }
    }
}

/// A thread-safe counter for stream generators.
final class ManagedCounter: Sendable {
    private let value = Mutex(0)

    /// Adds one and returns the new value.
    func increment() -> Int {
        value.withLock {
            $0 += 1; return $0
        }
    }
}

/// The process's resident set size (VmRSS in /proc/self/status): a baseline at creation, and the peak of samples.
final class RSSMonitor: Sendable {
    let baselineBytes: Int
    private let peak: Mutex<Int>

    init() {
        baselineBytes = Self.current()
        peak = Mutex(baselineBytes)
    }

    var baselineMiB: Int { baselineBytes >> 20 }
    var peakGrowthBytes: Int { peak.withLock { $0 } - baselineBytes }

    func sample() {
        let now = Self.current()
        peak.withLock { $0 = max($0, now) }
    }

    static func current() -> Int {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
            let kib = line.split(separator: " ").dropFirst().first.flatMap({ Int($0) })
        else { return 0 }
        return kib * 1024
    }
}

extension MotoServer {
    /// The names of the buckets on the server (ListBuckets).
    func listBuckets() async throws -> [String] {
        try await elements("Name", in: s3Get(path: "/", query: []))
    }

    /// The keys in `bucket` (ListObjectsV2, up to 1000).
    func listKeys(bucket: String) async throws -> [String] {
        try await elements("Key", in: s3Get(path: "/" + bucket, query: [(name: "list-type", value: "2")]))
    }

    private func elements(_ name: String, in xml: String) -> [String] {
        xml.components(separatedBy: "<\(name)>").dropFirst().compactMap { part in
            part.range(of: "</\(name)>").map { S3ErrorBody.decodeEntities(String(part[..<$0.lowerBound])) }
        }
    }

    /// A signed GET with moto's default (unchecked) credentials.
    private func s3Get(path: String, query: [(name: String, value: String)]) async throws -> String {
        let headers = [(name: "host", value: "127.0.0.1:\(port)")]
        let signature = SigV4Signer(accessKey: "testing", secretKey: "testing").sign(
            SigV4Signer.Request(
                method: "GET", path: path, query: query, headers: headers, payloadHash: SigV4Signer.emptyPayloadHash),
            date: Date())
        let queryString = query.isEmpty ? "" : "?" + SigV4Signer.canonicalQuery(query)
        var request = HTTPClientRequest(url: baseURL + path + queryString)
        for header in headers + signature.headersToAdd { request.headers.add(name: header.name, value: header.value) }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        let text = String(buffer: try await response.body.collect(upTo: 16 << 20))
        guard response.status == .ok else { throw MotoServerError("GET \(path) answered \(response.status): \(text)") }
        return text
    }
}

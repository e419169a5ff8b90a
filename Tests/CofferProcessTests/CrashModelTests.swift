import CofferTestKit
import NIOHTTP1
import Testing

/// The crash loop's judge on its own: every way a key can come back wrong after a crash is called lost or torn, and
/// only the states the clients may see are accepted. (Without this, a judge accepting anything would pass the loop.)
@Suite struct CrashModelTests {
    static let old = Body(TestData.bytes(3000, seed: 1))
    static let new = Body(TestData.bytes(3000, seed: 2))

    static func seen(_ bytes: [UInt8], etag: String? = nil) -> Observation {
        .present(bytes: bytes, etag: etag ?? Digests.etag(bytes))
    }

    static func judge(_ observed: Observation, _ acknowledged: BlobState, _ inFlight: [Mutation] = []) -> Verdict {
        Verdict.judge(observed, acknowledged: acknowledged, inFlight: inFlight).0
    }

    @Test func acceptsTheAcknowledgedStateOrAnInFlightResult() {
        #expect(Self.judge(Self.seen(Self.old.bytes), .present(Self.old)) == .acknowledged)
        #expect(Self.judge(.absent, .absent) == .acknowledged)
        let put = Mutation(id: 1, kind: .put, key: 0, body: Self.new)
        #expect(Self.judge(Self.seen(Self.new.bytes), .present(Self.old), [put]) == .inFlightApplied)
        #expect(Self.judge(Self.seen(Self.old.bytes), .present(Self.old), [put]) == .acknowledged)
        let delete = Mutation(id: 2, kind: .delete, key: 0, body: nil)
        #expect(Self.judge(.absent, .present(Self.old), [delete]) == .inFlightApplied)
        let post = Mutation(id: 3, kind: .post, key: 0, body: Self.new)
        #expect(Self.judge(Self.seen(Self.new.bytes), .absent, [post]) == .inFlightApplied)
    }

    @Test func callsAMissingOrOlderVersionLost() {
        #expect(Self.judge(.absent, .present(Self.new)) == .lost)
        #expect(Self.judge(Self.seen(Self.old.bytes), .present(Self.new)) == .lost)
        #expect(Self.judge(Self.seen(Self.old.bytes), .absent) == .lost)
        // A POST must not replace a blob: in flight on a taken key, its body is no valid outcome.
        let post = Mutation(id: 1, kind: .post, key: 0, body: Self.new)
        #expect(Self.judge(Self.seen(Self.new.bytes), .present(Self.old), [post]) == .lost)
    }

    @Test func callsMixedTruncatedOrMislabelledBytesTorn() {
        let mixed = Array(Self.old.bytes[..<1500] + Self.new.bytes[1500...])
        let put = Mutation(id: 1, kind: .put, key: 0, body: Self.new)
        #expect(Self.judge(Self.seen(mixed, etag: Self.new.etag), .present(Self.old), [put]) == .torn)
        #expect(Self.judge(Self.seen(mixed, etag: Self.old.etag), .present(Self.old), [put]) == .torn)
        let truncated = Array(Self.new.bytes.prefix(2048))
        #expect(Self.judge(Self.seen(truncated, etag: Self.new.etag), .present(Self.old), [put]) == .torn)
        #expect(Self.judge(Self.seen(Self.new.bytes, etag: Self.old.etag), .present(Self.old), [put]) == .torn)
        #expect(Self.judge(Self.seen(Self.old.bytes, etag: nil), .present(Self.old)) == .acknowledged)
        #expect(Self.judge(.present(bytes: Self.old.bytes, etag: nil), .present(Self.old)) == .torn)
        #expect(Self.judge(.failed(status: 500), .present(Self.old)) == .torn)
    }

    @Test func checksTheAnswersDuringTheLoad() {
        let model = CrashModel(keys: 1)
        let put = Mutation(id: 1, kind: .put, key: 0, body: Self.new)
        model.begin(put)
        var headers = HTTPHeaders([("ETag", Self.new.etag)])
        model.acknowledge(put, TestResponse(status: 204, headers: headers, body: []))
        #expect(model.failures.count == 1, "a PUT on an absent key must be answered 201")
        let again = Mutation(id: 2, kind: .put, key: 0, body: Self.old)
        headers = HTTPHeaders([("ETag", Self.new.etag)])
        model.acknowledge(again, TestResponse(status: 201, headers: headers, body: []))
        #expect(model.failures.count == 2, "a wrong ETag must be caught")
    }
}

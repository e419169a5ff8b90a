import CofferCore
import NIOCore

/// The answers every ``BlobStore`` must give, whatever keeps the bytes: the node's log engine and the gateway's
/// sharded store are both run through it (`EngineConformanceTests`, `GatewayConformanceTests`), so a rule one of them
/// applies differently fails there. Each check uses its own keys under `prefix`.
///
/// Only what the protocol promises is checked: `created` is checked for a first write and for conditional writes,
/// since an unconditional write through a hashed gateway is not looked up first (it always says "created").
public enum BlobStoreConformance {
    /// What went wrong, with the check's name.
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        init(_ check: String, _ what: String) { description = "\(check): \(what)" }
    }

    /// Runs every check against `store`; throws the first failure.
    public static func run(_ store: any BlobStore, prefix: String = "store/conformance") async throws {
        try await roundTrip(store, prefix + "/round-trip")
        try await notFound(store, prefix + "/absent")
        try await ranges(store, prefix + "/ranges")
        try await readConditions(store, prefix + "/read-conditions")
        try await writeConditions(store, prefix + "/write-conditions")
        try await bodyChecks(store, prefix + "/body-checks")
        try await deletes(store, prefix + "/deletes")
        try await byteKeys(store, prefix + "/bytes")
    }

    // MARK: The checks

    static func roundTrip(_ store: any BlobStore, _ name: String) async throws {
        let bytes = TestData.bytes(3000, seed: 1)
        let written = try await put(store, name, bytes, contentType: "text/plain")
        try expect(written.created, "roundTrip", "a first write is created")
        try expect(written.info.size == 3000, "roundTrip", "size \(written.info.size)")
        try expect(written.info.etag == Digests.hex(Digests.md5(bytes)), "roundTrip", "etag is the MD5")
        let read = try await store.read(key(name), options: ReadOptions())
        try expect(read.decision == .full, "roundTrip", "decision \(read.decision)")
        try expect(read.info.contentType == "text/plain", "roundTrip", "content type \(read.info.contentType)")
        try expect(read.info.etag == written.info.etag, "roundTrip", "etag on read")
        try expect(try await body(read) == bytes, "roundTrip", "bytes")
        let head = try await store.read(key(name), options: ReadOptions(includeBody: false))
        try expect(head.body == nil && head.info.size == 3000, "roundTrip", "a HEAD has no body")
        try await readNowAgrees(store, name, ReadOptions())
        let replaced = try await put(store, name, [1, 2, 3])
        try expect(replaced.info.size == 3, "roundTrip", "a replaced version")
        try expect(
            try await body(store.read(key(name), options: ReadOptions())) == [1, 2, 3], "roundTrip", "new bytes")
        let empty = try await put(store, name + "-empty", [])
        try expect(empty.info.size == 0, "roundTrip", "an empty blob")
        try expect(try await body(store.read(key(name + "-empty"), options: ReadOptions())) == [], "roundTrip", "empty")
    }

    static func notFound(_ store: any BlobStore, _ name: String) async throws {
        try await expectError(.notFound, "notFound", "read") {
            _ = try await store.read(key(name), options: ReadOptions())
        }
        try await expectError(.notFound, "notFound", "head") {
            _ = try await store.read(key(name), options: ReadOptions(includeBody: false))
        }
        try await expectError(.notFound, "notFound", "delete") {
            _ = try await store.delete(key(name), condition: .none)
        }
    }

    static func ranges(_ store: any BlobStore, _ name: String) async throws {
        let bytes = TestData.bytes(1000, seed: 2)
        _ = try await put(store, name, bytes)
        let cases: [(ByteRangeSpec, ReadDecision)] = [
            (.from(first: 10, last: 19), .partial(10..<20)),
            (.from(first: 990, last: nil), .partial(990..<1000)),
            (.from(first: 995, last: 5000), .partial(995..<1000)),
            (.suffix(7), .partial(993..<1000)),
            (.from(first: 1000, last: nil), .rangeNotSatisfiable),
        ]
        for (range, decision) in cases {
            let read = try await store.read(key(name), options: ReadOptions(range: range))
            try expect(read.decision == decision, "ranges", "\(range): \(read.decision), not \(decision)")
            if case .partial(let slice) = decision {
                let got = try await body(read)
                try expect(
                    got == Array(bytes[Int(slice.lowerBound)..<Int(slice.upperBound)]), "ranges", "\(range) bytes")
                try await readNowAgrees(store, name, ReadOptions(range: range))
            }
        }
    }

    static func readConditions(_ store: any BlobStore, _ name: String) async throws {
        let etag = try await put(store, name, [9, 9]).info.etag
        let notModified = try await store.read(key(name), options: ReadOptions(ifNoneMatch: [etag]))
        try expect(notModified.decision == .notModified && notModified.body == nil, "readConditions", "If-None-Match")
        let failed = try await store.read(key(name), options: ReadOptions(ifMatch: ["other"]))
        try expect(failed.decision == .preconditionFailed, "readConditions", "If-Match other: \(failed.decision)")
        let matched = try await store.read(key(name), options: ReadOptions(ifMatch: [etag]))
        try expect(matched.decision == .full, "readConditions", "If-Match current: \(matched.decision)")
        let star = try await store.read(key(name), options: ReadOptions(ifNoneMatch: ["*"]))
        try expect(star.decision == .notModified, "readConditions", "If-None-Match *: \(star.decision)")
    }

    static func writeConditions(_ store: any BlobStore, _ name: String) async throws {
        try await expectError(.preconditionFailed, "writeConditions", "ifPresent on absent") {
            _ = try await put(store, name, [1], condition: .ifPresent)
        }
        try await expectError(.preconditionFailed, "writeConditions", "ifMatch on absent") {
            _ = try await put(store, name, [1], condition: .ifMatch(["x"]))
        }
        let created = try await put(store, name, [1], condition: .ifAbsent)
        try expect(created.created, "writeConditions", "ifAbsent on absent creates")
        try await expectError(.alreadyExists, "writeConditions", "ifAbsent on present") {
            _ = try await put(store, name, [2], condition: .ifAbsent)
        }
        try await expectError(.preconditionFailed, "writeConditions", "ifMatch other") {
            _ = try await put(store, name, [2], condition: .ifMatch(["other"]))
        }
        let replaced = try await put(store, name, [3], condition: .ifMatch([created.info.etag]))
        try expect(!replaced.created, "writeConditions", "ifMatch current replaces")
        let again = try await put(store, name, [4], condition: .ifPresent)
        try expect(!again.created, "writeConditions", "ifPresent replaces")
        try expect(try await body(store.read(key(name), options: ReadOptions())) == [4], "writeConditions", "bytes")
    }

    static func bodyChecks(_ store: any BlobStore, _ name: String) async throws {
        _ = try await put(store, name, [7, 7, 7])
        var options = WriteOptions(expectedMD5: Array(repeating: 0, count: 16))
        try await expectError(.digestMismatch, "bodyChecks", "a wrong Content-MD5") {
            _ = try await store.write(key(name), body: Chunks([[1, 2]]), options: options)
        }
        options = WriteOptions(expectedLength: 10)
        try await expectError(.incompleteBody, "bodyChecks", "a short body") {
            _ = try await store.write(key(name), body: Chunks([[1, 2]]), options: options)
        }
        options = WriteOptions(expectedLength: 1)
        try await expectError(.incompleteBody, "bodyChecks", "a long body") {
            _ = try await store.write(key(name), body: Chunks([[1, 2]]), options: options)
        }
        try expect(try await body(store.read(key(name), options: ReadOptions())) == [7, 7, 7], "bodyChecks", "intact")
        let md5 = Digests.md5([5, 6])
        let ok = try await store.write(
            key(name), body: Chunks([[5], [6]]), options: WriteOptions(expectedLength: 2, expectedMD5: md5))
        try expect(ok.info.size == 2, "bodyChecks", "a body in two chunks with its digest")
    }

    static func deletes(_ store: any BlobStore, _ name: String) async throws {
        let written = try await put(store, name, [1, 2, 3, 4])
        try await expectError(.preconditionFailed, "deletes", "ifMatch other") {
            _ = try await store.delete(key(name), condition: .ifMatch(["other"]))
        }
        let removed = try await store.delete(key(name), condition: .ifMatch([written.info.etag]))
        try expect(removed.size == 4 && removed.etag == written.info.etag, "deletes", "the version removed")
        try await expectError(.notFound, "deletes", "read after delete") {
            _ = try await store.read(key(name), options: ReadOptions())
        }
        try await expectError(.notFound, "deletes", "delete again") {
            _ = try await store.delete(key(name), condition: .none)
        }
        let recreated = try await put(store, name, [5])
        try expect(recreated.created, "deletes", "a write after a delete creates")
    }

    static func byteKeys(_ store: any BlobStore, _ name: String) async throws {
        let composed = name + "/caf\u{E9}"
        let decomposed = name + "/cafe\u{301}"
        _ = try await put(store, composed, [1])
        try await expectError(.notFound, "byteKeys", "an equivalent spelling") {
            _ = try await store.read(key(decomposed), options: ReadOptions())
        }
        _ = try await put(store, decomposed, [2])
        try expect(try await body(store.read(key(composed), options: ReadOptions())) == [1], "byteKeys", "composed")
        try expect(try await body(store.read(key(decomposed), options: ReadOptions())) == [2], "byteKeys", "decomposed")
    }

    // MARK: Helpers

    /// When `readNow` answers, it gives what `read` gives.
    static func readNowAgrees(_ store: any BlobStore, _ name: String, _ options: ReadOptions) async throws {
        guard let now = store.readNow(key(name), options: options) else { return }
        let read = try await store.read(key(name), options: options)
        switch now {
        case .failure(let error): throw Failure("readNow", "\(name): \(error), read found \(read.decision)")
        case .success(let answer):
            try expect(answer.decision == read.decision && answer.info.etag == read.info.etag, "readNow", name)
            try expect(try await body(answer) == body(read), "readNow", "\(name) bytes")
        }
    }

    static func key(_ name: String) -> BlobKey { BlobKey(name)! }

    static func put(
        _ store: any BlobStore, _ name: String, _ bytes: [UInt8], condition: WriteCondition = .none,
        contentType: String? = nil
    ) async throws -> WriteResult {
        try await store.write(
            key(name), body: Chunks([bytes]),
            options: WriteOptions(condition: condition, contentType: contentType, expectedLength: Int64(bytes.count)))
    }

    static func body(_ read: BlobRead) async throws -> [UInt8] {
        switch read.body {
        case nil: return []
        case .buffer(let buffer): return Array(buffer.readableBytesView)
        case .stream(let stream):
            var out: [UInt8] = []
            for try await chunk in stream { out += chunk.readableBytesView }
            return out
        }
    }

    static func expect(_ condition: Bool, _ check: String, _ what: String) throws {
        if !condition { throw Failure(check, what) }
    }

    static func expectError(
        _ expected: StoreError, _ check: String, _ what: String, _ body: () async throws -> Void
    ) async throws {
        do {
            try await body()
        } catch let error as StoreError where error == expected {
            return
        } catch {
            throw Failure(check, "\(what): \(error), not \(expected)")
        }
        throw Failure(check, "\(what): succeeded, not \(expected)")
    }

    /// A request body of the given chunks.
    struct Chunks: AsyncSequence, Sendable {
        typealias Element = ByteBuffer
        let chunks: [[UInt8]]
        init(_ chunks: [[UInt8]]) { self.chunks = chunks }

        struct AsyncIterator: AsyncIteratorProtocol {
            var rest: ArraySlice<[UInt8]>
            mutating func next() async throws -> ByteBuffer? {
                guard let first = rest.popFirst() else { return nil }
                return ByteBuffer(bytes: first)
            }
        }

        func makeAsyncIterator() -> AsyncIterator { AsyncIterator(rest: chunks[...]) }
    }
}

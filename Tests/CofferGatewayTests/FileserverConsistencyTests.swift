import CofferCore
import CofferTestKit
import Foundation
import NIOHTTP1
import Testing

@testable import CofferGateway

/// The shared-volume gateway in front of five of the challenge's file servers (real processes on one directory, with
/// their per-process name caches and locks, truncate-then-write PUTs, chunked GETs and 200-with-error-text answers).
/// Each test reproduces one way such backends hand out wrong answers, and checks that none reaches the client. Most
/// run the servers at 50 ms a request instead of 333 (the habits are the same, the tests shorter) and with the
/// gateway's cache off, so that every read reaches a backend.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct FileserverConsistencyTests {
    static let uncached = FileserverGateway.configuration(cache: false)

    /// Files of 2 KiB and more come back chunked, with no Content-Length: a 9 MiB and a 40 MiB file read back whole,
    /// and 15 parallel GETs of the 9 MiB file leave every backend's breaker closed while other names keep working.
    @Test("chunked GETs of any size; parallel large reads trip no breaker")
    func largeChunkedReads() async throws {
        try await withFileserverGateway(latencyMilliseconds: 50, configuration: Self.uncached) { gateway in
            let nine = gatewayTestBytes(9 << 20, seed: 9)
            let forty = gatewayTestBytes(40 << 20, seed: 40)
            #expect(try await gateway.request(.PUT, "nine.bin", body: nine).status == 201)
            #expect(try await gateway.request(.PUT, "forty.bin", body: forty).status == 201)
            let readNine = try await gateway.request(.GET, "nine.bin")
            #expect(readNine.status == 200, "\(readNine.status) \(readNine.text.prefix(300))")
            #expect(readNine.body == nine)
            let readForty = try await gateway.request(.GET, "forty.bin")
            #expect(readForty.status == 200)
            #expect(readForty.body == forty)

            // A gateway that knows nothing (restarted) must still read them: it counts, then asks again.
            try await gateway.restartGateway()
            #expect(try await gateway.request(.GET, "forty.bin").body == forty)

            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<15 {
                    group.addTask {
                        let answer = try await gateway.request(.GET, "nine.bin")
                        return answer.body == nine ? answer.status : -answer.status
                    }
                }
                group.addTask { try await gateway.request(.PUT, "other", body: [1, 2, 3]).status }
                var all: [Int] = []
                for try await status in group { all.append(status) }
                return all
            }
            #expect(statuses.filter { $0 == 200 }.count == 15, "\(statuses)")
            #expect(statuses.contains(201), "\(statuses)")
            #expect(gateway.store.gates.allSatisfy { $0.isHealthy })
            #expect(gateway.store.gates.allSatisfy { $0.metrics.breakerOpens == 0 && $0.metrics.unavailable == 0 })
            #expect(try await gateway.request(.GET, "other").body == [1, 2, 3])
        }
    }

    /// Every server caches which names exist. After a DELETE through one of them, another that read the name before
    /// answers a GET with 200 and `open …: no such file or directory`. The gateway answers 404, and its DELETE
    /// reached every server that knew the name, so even a gateway that forgot everything (restarted) gets 404s.
    @Test("no stale reads after DELETE, also from a restarted gateway")
    func noStaleReadsAfterDelete() async throws {
        try await withFileserverGateway(latencyMilliseconds: 50, configuration: Self.uncached) { gateway in
            let names = (0..<20).map { "stale-\($0)" }
            var wrong: [String] = []
            for name in names {
                wrong += try await Self.writeReadDeleteRead(name, through: gateway)
            }
            try await gateway.restartGateway()
            for name in names {
                wrong += try await Self.wrongAnswers(name, through: gateway, reads: 5)
            }
            #expect(wrong.isEmpty, "\(wrong.count) wrong answers after DELETE: \(wrong.prefix(5))")
        }
    }

    /// PUT, read through many backends at once (so that several cache the name), DELETE, read again: the wrong
    /// answers after the DELETE.
    static func writeReadDeleteRead(_ name: String, through gateway: FileserverGateway) async throws -> [String] {
        let bytes = gatewayTestBytes(3000, seed: UInt64(name.utf8.count * 7919 + Int(name.utf8.last ?? 0)))
        #expect(try await gateway.request(.PUT, name, body: bytes).status == 201)
        let reads = try await parallel(8) { try await gateway.request(.GET, name) }
        #expect(reads.allSatisfy { $0.status == 200 && $0.body == bytes })
        let deleted = try await gateway.request(.DELETE, name)
        #expect(deleted.status == 200, "\(deleted.status) \(deleted.text)")
        return try await wrongAnswers(name, through: gateway, reads: 8)
    }

    /// `reads` parallel GETs of a deleted name: the answers that are not 404.
    static func wrongAnswers(_ name: String, through gateway: FileserverGateway, reads: Int) async throws -> [String] {
        let answers = try await parallel(reads) { try await gateway.request(.GET, name) }
        return answers.filter { $0.status != 404 }.map { "\(name): \($0.status) \($0.text.prefix(80))" }
    }

    /// A PUT truncates the file and then writes it; another server reading meanwhile would send a short body. Reads
    /// started during writes of the same name get the old or the new version, whole, for a buffered (7 MiB) and a
    /// streamed (40 MiB) body alike.
    @Test("no torn reads while a write of the same name runs", arguments: [7 << 20, 40 << 20])
    func noTornReads(size: Int) async throws {
        try await withFileserverGateway(latencyMilliseconds: 50, configuration: Self.uncached) { gateway in
            let versions = (0..<4).map { gatewayTestBytes(size, seed: UInt64(size + $0)) }
            #expect(try await gateway.request(.PUT, "hot", body: versions[0]).status == 201)
            var torn: [String] = []
            for round in 1..<versions.count {
                let answers = try await withThrowingTaskGroup(of: (Bool, TestResponse).self) { group in
                    group.addTask { (true, try await gateway.request(.PUT, "hot", body: versions[round])) }
                    // Reads spread densely over the time the write may take at the backend (its latency, then
                    // the truncate and the copy).
                    let (reads, step) = size > 8 << 20 ? (10, 20) : (30, 6)
                    for delay in 0..<reads {
                        group.addTask {
                            try await Task.sleep(for: .milliseconds(20 + step * delay))
                            return (false, try await gateway.request(.GET, "hot"))
                        }
                    }
                    var all: [(Bool, TestResponse)] = []
                    for try await answer in group { all.append(answer) }
                    return all
                }
                for (isPut, answer) in answers {
                    if isPut {
                        #expect(answer.status == 200 || answer.status == 204 || answer.status == 201)
                    } else if answer.status != 200
                        || !(answer.body == versions[round - 1] || answer.body == versions[round])
                    {
                        torn.append("round \(round): \(answer.status), \(answer.body.count) bytes")
                    }
                }
            }
            #expect(torn.isEmpty, "\(torn)")
        }
    }

    /// A file changed behind the gateway's back (shorter than the version it acknowledged) is never served as that
    /// version: 502, not a wrong 200.
    @Test("a body of another length than acknowledged is never passed on")
    func wrongLengthIsRefused() async throws {
        try await withFileserverGateway(latencyMilliseconds: 20, configuration: Self.uncached) { gateway in
            let bytes = gatewayTestBytes(5000, seed: 5)
            #expect(try await gateway.request(.PUT, "changed", body: bytes).status == 201)
            try Data(bytes.prefix(4000)).write(to: URL(fileURLWithPath: gateway.servers.path(of: "changed")))
            let answer = try await gateway.request(.GET, "changed")
            #expect(answer.status == 502, "\(answer.status) \(answer.body.count) bytes")
            #expect(answer.isJSONError("bad_gateway"))
            #expect(gateway.store.gates.allSatisfy { $0.isHealthy })
        }
    }

    /// The server answers 500 for a name its file system refuses (over 255 bytes): a permanent error, answered 502
    /// with the backend's status and no Retry-After, and never counted against the backend.
    @Test("a permanent backend error is 502, not 503 + Retry-After, and trips no breaker")
    func permanentErrors() async throws {
        try await withFileserverGateway(latencyMilliseconds: 20, configuration: Self.uncached) { gateway in
            let long = String(repeating: "n", count: 300)
            for _ in 0..<6 {
                let answer = try await gateway.request(.PUT, long, body: [1, 2, 3])
                #expect(answer.status == 502, "\(answer.status) \(answer.text)")
                #expect(answer.header("retry-after") == nil)
                #expect(answer.isJSONError("bad_gateway"))
                #expect(answer.text.contains("HTTP 500"), "\(answer.text)")
            }
            #expect(gateway.store.gates.allSatisfy { $0.isHealthy && $0.metrics.unavailable == 0 })
            #expect(try await gateway.request(.PUT, "fine", body: [4]).status == 201)
            #expect(try await gateway.request(.GET, "fine").body == [4])
        }
    }

    static func parallel<T: Sendable>(
        _ count: Int, _ body: @escaping @Sendable () async throws -> T
    ) async throws -> [T] {
        try await withThrowingTaskGroup(of: T.self) { group in
            for _ in 0..<count { group.addTask { try await body() } }
            var all: [T] = []
            for try await value in group { all.append(value) }
            return all
        }
    }
}

import CofferTestKit
import NIOHTTP1
import Synchronization
import Testing

extension ProcessTests {
    /// Concurrent requests on the same keys through a live child node, then a SIGKILL and a restart.
    @Suite struct RaceTests {
        static let keys = 4
        static let writers = 8
        static let operationsPerWriter = 100

        /// What one racing request got.
        struct Outcome: Sendable {
            let key: Int
            /// `nil` for a DELETE.
            let body: Body?
            let status: Int
            let etag: String?
        }

        /// Writers PUT (small and spilled bodies) and DELETE a few keys at random while a reader GETs them. Every
        /// answer is one a linearizable store may give; a GET always returns one whole version that was PUT to the
        /// key; afterwards each key is absent or holds exactly one of its acknowledged PUT bodies, and the count of
        /// creations (201) minus deletions (204) says which. A restart after SIGKILL shows the same state.
        @Test(.timeLimit(.minutes(3))) func deletesRacingPutsLeaveOneWholeVersion() async throws {
            try await withNodeRunner { runner in
                let node = try await runner.start()
                let port = try #require(node.port)
                let bodies = Self.bodies()
                let byETag = Dictionary(bodies.joined().map { ($0.etag, $0) }, uniquingKeysWith: { first, _ in first })
                let writersDone = StopFlag()
                async let reads = Self.read(port: port, until: writersDone, known: byETag)
                let outcomes = try await withThrowingTaskGroup(of: [Outcome].self) { group in
                    defer { writersDone.set() }
                    for writer in 0..<Self.writers {
                        group.addTask { try await Self.write(port: port, writer: writer, bodies: bodies[writer]) }
                    }
                    return try await group.reduce(into: []) { $0 += $1 }
                }
                let (readCount, badReads) = try await reads
                #expect(readCount > 0)
                #expect(badReads.isEmpty, "reads that were no version written: \(badReads.prefix(10))")
                for outcome in outcomes {
                    let valid = outcome.body == nil ? [204, 404] : [201, 204]
                    #expect(valid.contains(outcome.status), "\(outcome)")
                    if let body = outcome.body { #expect(outcome.etag == body.etag) }
                }

                let before = try await Self.readAll(node)
                let puts = outcomes.filter { $0.body != nil }
                let deletes = outcomes.filter { $0.body == nil }
                print(
                    "races: puts=\(puts.count) (created=\(puts.count { $0.status == 201 })) "
                        + "deletes=\(deletes.count) (deleted=\(deletes.count { $0.status == 204 })) reads=\(readCount) "
                        + "present=\(before.count { if case .present = $0 { true } else { false } })/\(Self.keys)")
                for key in 0..<Self.keys {
                    let mine = outcomes.filter { $0.key == key }
                    let creations = mine.count { $0.body != nil && $0.status == 201 }
                    let deletions = mine.count { $0.body == nil && $0.status == 204 }
                    let acknowledged = Set(mine.filter { [201, 204].contains($0.status) }.compactMap { $0.body?.etag })
                    switch before[key] {
                    case .absent:
                        #expect(creations == deletions, "key \(key) absent: \(creations) created, \(deletions) deleted")
                    case .present(let bytes, let etag):
                        #expect(creations == deletions + 1, "key \(key) present: \(creations) vs \(deletions)")
                        let body = try #require(etag.flatMap { byETag[$0] }, "key \(key): unknown etag \(etag ?? "-")")
                        #expect(sameBytes(bytes, body.bytes), "key \(key): bytes are not those of etag \(body.etag)")
                        #expect(acknowledged.contains(body.etag), "key \(key): holds a body never PUT there")
                    case .failed(let status):
                        Issue.record("key \(key): GET answered \(status)")
                    }
                }

                try await node.killHard()
                let after = try await Self.readAll(try await runner.start())
                for key in 0..<Self.keys {
                    #expect(Self.same(before[key], after[key]), "key \(key) changed across the restart")
                }
            }
        }

        /// Several connections POST to the same fresh keys at once: exactly one 201 per key, every other 409, and
        /// the key holds the winner's body, before and after a restart (SIGKILL).
        @Test(.timeLimit(.minutes(2))) func racingPostsCreateOnce() async throws {
            let keys = 16
            try await withNodeRunner { runner in
                let node = try await runner.start()
                let port = try #require(node.port)
                let outcomes = try await withThrowingTaskGroup(of: [Outcome].self) { group in
                    for writer in 0..<Self.writers {
                        group.addTask {
                            let client = try await HTTPTestClient.connect(port: port)
                            defer { client.close() }
                            var outcomes: [Outcome] = []
                            for key in 0..<keys {
                                let body = Body(TestData.bytes(64 + writer, seed: UInt64(writer << 16 | key)))
                                let response = try await client.send(.POST, "/store/race/post-\(key)", body: body.bytes)
                                outcomes.append(
                                    Outcome(
                                        key: key, body: body, status: response.status, etag: response.header("etag")))
                            }
                            return outcomes
                        }
                    }
                    return try await group.reduce(into: []) { $0 += $1 }
                }
                var winners: [Int: Body] = [:]
                for key in 0..<keys {
                    let mine = outcomes.filter { $0.key == key }
                    let created = mine.filter { $0.status == 201 }
                    #expect(created.count == 1, "key \(key): \(created.count) POSTs created it")
                    #expect(mine.count { $0.status == 409 } == Self.writers - 1)
                    winners[key] = created.first?.body
                }
                for restart in [false, true] {
                    if restart {
                        try await runner.current?.killHard()
                        try await runner.start()
                    }
                    let client = try await #require(runner.current).client()
                    defer { client.close() }
                    for key in 0..<keys {
                        let response = try await client.send(.GET, "/store/race/post-\(key)")
                        let winner = try #require(winners[key])
                        #expect(response.status == 200 && sameBytes(response.body, winner.bytes), "key \(key)")
                        #expect(response.header("etag") == winner.etag)
                    }
                }
            }
        }

        static func path(_ key: Int) -> String { "/store/race/\(key)" }

        /// Each writer's PUT bodies, all different: mostly small, one in sixteen above the inline threshold.
        static func bodies() -> [[Body]] {
            (0..<writers).map { writer in
                (0..<operationsPerWriter).map { n in
                    let seed = UInt64(writer << 16 | n)
                    let size = n % 16 == 3 ? TestData.mib + 1000 * n : 100 + 37 * n
                    return Body(TestData.bytes(size, seed: seed))
                }
            }
        }

        /// One writer: for each of its bodies, a PUT of it or a DELETE, on a random key.
        static func write(port: Int, writer: Int, bodies: [Body]) async throws -> [Outcome] {
            var generator = SeededGenerator(seed: UInt64(writer))
            let client = try await HTTPTestClient.connect(port: port)
            defer { client.close() }
            var outcomes: [Outcome] = []
            for body in bodies {
                let key = Int.random(in: 0..<keys, using: &generator)
                let put = Bool.random(using: &generator)
                let response = try await client.send(put ? .PUT : .DELETE, path(key), body: put ? body.bytes : nil)
                outcomes.append(
                    Outcome(key: key, body: put ? body : nil, status: response.status, etag: response.header("etag")))
            }
            return outcomes
        }

        /// GETs random keys until `done` is set; returns how many, and a description of every answer that is not a
        /// 404 or a whole version some writer PUT.
        static func read(port: Int, until done: StopFlag, known: [String: Body]) async throws -> (Int, [String]) {
            var generator = SeededGenerator(seed: 99)
            let client = try await HTTPTestClient.connect(port: port)
            defer { client.close() }
            var bad: [String] = []
            var count = 0
            repeat {
                count += 1
                let key = Int.random(in: 0..<keys, using: &generator)
                let response = try await client.send(.GET, path(key))
                let whole = response.header("etag").flatMap { known[$0] }.map { sameBytes($0.bytes, response.body) }
                if response.status != 404 && (response.status != 200 || whole != true) {
                    bad.append("key \(key): \(response.status), \(response.body.count) bytes")
                }
            } while !done.isSet
            return (count, bad)
        }

        static func readAll(_ node: ChildNode) async throws -> [Observation] {
            let client = try await node.client()
            defer { client.close() }
            var observations: [Observation] = []
            for key in 0..<keys { observations.append(Observation(try await client.send(.GET, path(key)))) }
            return observations
        }

        static func same(_ a: Observation, _ b: Observation) -> Bool {
            switch (a, b) {
            case (.absent, .absent): true
            case (.present(let x, let xTag), .present(let y, let yTag)): xTag == yTag && sameBytes(x, y)
            default: false
            }
        }
    }
}

/// A flag one task sets and others poll.
final class StopFlag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .releasing) }
    var isSet: Bool { value.load(ordering: .acquiring) }
}

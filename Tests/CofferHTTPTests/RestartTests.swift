import CofferTestKit
import Testing

/// What was acknowledged through HTTP survives a restart of the server and the engine on the same directory.
@Suite(.timeLimit(.minutes(1))) struct RestartTests {
    /// The body of blob `index`: mostly small, some empty, a few spilled.
    static func body(_ index: Int, generation: UInt64 = 0) -> [UInt8] {
        let size: Int
        switch index % 100 {
        case 0: size = 0
        case 50: size = 70 * 1024 + index  // above the 64 KiB inline threshold: spilled
        default: size = (index * 37) % 3000
        }
        return TestData.bytes(size, seed: UInt64(index) &+ generation &* 1_000_003)
    }

    static func path(_ index: Int) -> String {
        switch index % 3 {
        case 0: "/store/restart/\(index)"
        case 1: "/object/restart\(index)"
        default: "/api/fileserver/restart/%C3%A9/\(index)"
        }
    }

    /// Runs `work(i)` for every `i` in `indices`, spread over `connections` keep-alive clients.
    static func spread(
        _ node: TestNode, _ indices: [Int], connections: Int = 8,
        _ work: @escaping @Sendable (HTTPTestClient, Int) async throws -> Void
    ) async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for lane in 0..<connections {
                group.addTask {
                    let client = try await node.client()
                    defer { client.close() }
                    for index in indices where index % connections == lane { try await work(client, index) }
                }
            }
            try await group.waitForAll()
        }
    }

    @Test func thousandBlobsSurviveARestart() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let count = 1000
        let replaced = Set(stride(from: 7, to: count, by: 20))  // written twice; the second version must win
        let deleted = Set(stride(from: 13, to: count, by: 50))  // written, then deleted

        let first = try await TestNode.start(.spilling, directory: directory)
        do {
            try await Self.spread(first, Array(0..<count)) { client, index in
                let response = try await client.send(.PUT, Self.path(index), body: Self.body(index))
                #expect(response.status == 201, "\(Self.path(index))")
            }
            try await Self.spread(first, replaced.sorted()) { client, index in
                let response = try await client.send(.PUT, Self.path(index), body: Self.body(index, generation: 1))
                #expect(response.status == 204, "\(Self.path(index))")
            }
            try await Self.spread(first, deleted.sorted()) { client, index in
                let response = try await client.send(.DELETE, Self.path(index))
                #expect([200, 204].contains(response.status), "\(Self.path(index))")
            }
        } catch {
            try? await first.stop()
            throw error
        }
        try await first.stop()

        let second = try await TestNode.start(.spilling, directory: directory)
        do {
            #expect(second.engine.count == count - deleted.count)
            try await Self.spread(second, Array(0..<count)) { client, index in
                let response = try await client.send(.GET, Self.path(index))
                if deleted.contains(index) {
                    #expect(response.status == 404, "\(Self.path(index))")
                    return
                }
                let expected = Self.body(index, generation: replaced.contains(index) ? 1 : 0)
                #expect(response.status == 200, "\(Self.path(index))")
                #expect(response.body == expected, "\(Self.path(index))")
                #expect(response.header("etag") == Digests.etag(expected), "\(Self.path(index))")
            }
        } catch {
            try? await second.stop()
            throw error
        }
        try await second.stop()
    }
}

import CofferTestKit
import NIOHTTP1
import Synchronization

/// One client of the crash loop's load, on its own keep-alive connection: claims a free key, sends one mutation
/// (PUT, POST or DELETE; small bodies and now and then one above the 1 MiB inline threshold), records the answer,
/// and goes on until the connection fails (the node was killed).
enum LoadWorker {
    /// Share of writes with a large body (2–3 MiB, so the engine spills it to a file of its own).
    static let largePercent = 6
    private static let ids = Atomic<Int>(0)

    static func run(model: CrashModel, port: Int, seed: UInt64) async {
        var generator = SeededGenerator(seed: seed)
        var client: HTTPTestClient?
        defer { client?.close() }
        while true {
            if client == nil {
                do {
                    client = try await HTTPTestClient.connect(port: port, timeout: .seconds(60))
                } catch {
                    if !model.killed { model.fail("connect failed before the kill: \(error)") }
                    return
                }
            }
            let (key, state) = model.claim(using: &generator)
            let mutation = choose(key: key, state: state, using: &generator)
            model.begin(mutation)
            do {
                let response = try await client!.send(
                    HTTPMethod(rawValue: mutation.kind.rawValue), CrashModel.path(key), body: mutation.body?.bytes)
                model.acknowledge(mutation, response)
                // An answer given before a large body was read (a 409 to a POST) closes the connection.
                if response.header("connection")?.lowercased() == "close" {
                    client?.close()
                    client = nil
                }
            } catch {
                model.interrupted(mutation, by: error)
                return
            }
        }
    }

    /// Mostly creates on absent keys and overwrites or deletes present ones; now and then a POST on a taken key
    /// (409) or a DELETE of an absent one (404).
    static func choose(key: Int, state: BlobState, using generator: inout SeededGenerator) -> Mutation {
        let roll = Int.random(in: 0..<100, using: &generator)
        let kind: Mutation.Kind
        switch state {
        case .absent: kind = roll < 55 ? .post : roll < 92 ? .put : .delete
        case .present: kind = roll < 60 ? .put : roll < 93 ? .delete : .post
        }
        let id = ids.wrappingAdd(1, ordering: .relaxed).newValue
        guard kind != .delete else { return Mutation(id: id, kind: kind, key: key, body: nil) }
        let size =
            Int.random(in: 0..<100, using: &generator) < largePercent
            ? Int.random(in: 2 * TestData.mib...3 * TestData.mib, using: &generator)
            : Int.random(in: 0...4 * TestData.kib, using: &generator)
        return Mutation(id: id, kind: kind, key: key, body: Body(TestData.bytes(size, seed: generator.next())))
    }
}

import CofferCore
import CofferTestKit
import Foundation
import NIOCore
import Testing

@testable import CofferGateway

/// The sharded store through the real HTTP layer, over real Coffer nodes: placement, replication, failures, repair,
/// set changes.
@Suite(.timeLimit(.minutes(5)))
struct ShardedStoreTests {
    /// The nodes a key's rendezvous ranking puts first.
    static func expectedOwners(_ harness: GatewayHarness, key: String, count: Int) -> Set<Int> {
        let ids = (0..<harness.nodeCount).map(harness.backendID)
        return Set(Rendezvous(ids: ids).rank(key: key).prefix(count))
    }

    @Test("round trips through /object/ and /store/, spread over every node, one copy each")
    func roundTripsAndSpread() async throws {
        try await withGateway(nodes: 3) { gateway in
            var perNode = [0, 0, 0]
            for index in 0..<60 {
                let path = index % 2 == 0 ? "/object/k\(index)" : "/store/dir/k \(index)"
                let key = index % 2 == 0 ? "object/k\(index)" : "store/dir/k \(index)"
                let encoded = path.replacingOccurrences(of: " ", with: "%20")
                let data = gatewayTestBytes(100 + index * 37, seed: UInt64(index))
                let put = try await gateway.request(.PUT, encoded, body: data)
                #expect(put.status == 201, "\(put.status) \(put.text)")
                #expect(put.header("etag") == Digests.etag(data))
                let got = try await gateway.request(.GET, encoded)
                #expect(got.status == 200)
                #expect(got.body == data)
                #expect(got.header("etag") == Digests.etag(data))
                let holders = await gateway.holders(key)
                #expect(holders.count == 1, "\(key) on \(holders)")
                #expect(Set(holders) == Self.expectedOwners(gateway, key: key, count: 1))
                for holder in holders { perNode[holder] += 1 }
            }
            print("sharded store: 60 keys over 3 nodes: \(perNode)")
            #expect(perNode.allSatisfy { $0 >= 8 }, "\(perNode)")
            for index in 0..<60 where index % 2 == 0 {
                #expect(try await gateway.request(.DELETE, "/object/k\(index)").status == 204)
                #expect(try await gateway.request(.GET, "/object/k\(index)").status == 404)
                #expect(try await gateway.request(.DELETE, "/object/k\(index)").status == 404)
                #expect(await gateway.holders("object/k\(index)").isEmpty)
            }
            let head = try await gateway.request(.HEAD, "/store/dir/k%201")
            #expect(head.status == 200)
            #expect(head.header("content-length") == "137")
        }
    }

    @Test("R=2: every write lands on the key's top two nodes")
    func twoReplicas() async throws {
        try await withGateway(nodes: 3, configuration: GatewayHarness.configuration(replicas: 2)) {
            gateway async throws in
            for index in 0..<30 {
                let data = gatewayTestBytes(500, seed: UInt64(index))
                #expect(try await gateway.request(.PUT, "/object/r\(index)", body: data).status == 201)
                let holders = Set(await gateway.holders("object/r\(index)"))
                #expect(holders == Self.expectedOwners(gateway, key: "object/r\(index)", count: 2))
            }
            #expect(try await gateway.request(.DELETE, "/object/r3").status == 204)
            #expect(await gateway.holders("object/r3").isEmpty)
        }
    }

    @Test("R=1, a node down: its keys answer 503 at once, the others work; it comes back")
    func nodeDownOneReplica() async throws {
        try await withGateway(nodes: 3) { gateway in
            var data: [Int: [UInt8]] = [:]
            for index in 0..<30 {
                data[index] = gatewayTestBytes(300, seed: UInt64(index))
                #expect(try await gateway.request(.PUT, "/object/d\(index)", body: data[index]).status == 201)
            }
            let owner = { (index: Int) in Self.expectedOwners(gateway, key: "object/d\(index)", count: 1).first! }
            await gateway.stopNode(0)
            var unavailable = 0
            for index in 0..<30 {
                let got = try await gateway.request(.GET, "/object/d\(index)")
                if owner(index) == 0 {
                    #expect(got.status == 503, "\(got.status)")
                    #expect(got.header("retry-after") != nil)
                    unavailable += 1
                } else {
                    #expect(got.status == 200)
                    #expect(got.body == data[index])
                }
            }
            #expect(unavailable > 0)
            #expect(await gatewayEventually { !gateway.store.gates[0].isHealthy })
            // Once the breaker is open, the dead node's keys fail fast and new writes go to the live nodes.
            let start = ContinuousClock.now
            let dead = (0..<30).first { owner($0) == 0 }!
            #expect(try await gateway.request(.GET, "/object/d\(dead)").status == 503)
            #expect(ContinuousClock.now - start < .seconds(5))
            let fresh = gatewayTestBytes(1000, seed: 99)
            for index in 0..<10 {
                #expect(try await gateway.request(.PUT, "/object/n\(index)", body: fresh).status == 201)
            }
            try await gateway.restartNode(0)
            #expect(await gatewayEventually { gateway.store.gates[0].isHealthy })
            for index in 0..<30 {
                let got = try await gateway.request(.GET, "/object/d\(index)")
                #expect(got.status == 200)
                #expect(got.body == data[index])
            }
            for index in 0..<10 {
                #expect(try await gateway.request(.GET, "/object/n\(index)").body == fresh)
            }
        }
    }

    @Test("R=2, a node down: everything keeps working; back empty, reads repair it")
    func nodeDownTwoReplicas() async throws {
        try await withGateway(nodes: 3, configuration: GatewayHarness.configuration(replicas: 2)) {
            gateway async throws in
            var data: [Int: [UInt8]] = [:]
            for index in 0..<30 {
                data[index] = gatewayTestBytes(200 + index, seed: UInt64(index))
                #expect(try await gateway.request(.PUT, "/store/x/\(index)", body: data[index]).status == 201)
            }
            await gateway.stopNode(1)
            for index in 0..<30 {
                let got = try await gateway.request(.GET, "/store/x/\(index)")
                #expect(got.status == 200, "\(got.status) \(got.text)")
                #expect(got.body == data[index])
            }
            // Writes keep working too (on the two live nodes, once the dead one's breaker is open).
            #expect(await gatewayEventually { !gateway.store.gates[1].isHealthy })
            for index in 30..<40 {
                data[index] = gatewayTestBytes(100, seed: UInt64(index))
                #expect(try await gateway.request(.PUT, "/store/x/\(index)", body: data[index]).status == 201)
            }
            try await gateway.restartNode(1, fresh: true)
            #expect(await gatewayEventually { gateway.store.gates[1].isHealthy })
            let owned = (0..<40).filter { Self.expectedOwners(gateway, key: "store/x/\($0)", count: 2).contains(1) }
            #expect(!owned.isEmpty)
            for index in 0..<40 {
                let got = try await gateway.request(.GET, "/store/x/\(index)")
                #expect(got.status == 200)
                #expect(got.body == data[index])
            }
            let node = gateway.node(1)
            #expect(
                await gatewayEventually {
                    for index in owned where (try? await node.bytes("store/x/\(index)")) != data[index] {
                        return false
                    }
                    return true
                }, "the returning node got its keys back")

            // A replica that lost one key: the next read repairs it.
            let key = "store/x/\(owned[0])"
            _ = try await node.engine.delete(BlobKey(key)!, condition: .none)
            #expect(try await gateway.request(.GET, "/" + key).body == data[owned[0]])
            #expect(await gatewayEventually { await node.has(key) })
        }
    }

    @Test("adding a node keeps every old key readable, and reads move keys to it")
    func addingANode() async throws {
        try await withGateway(nodes: 3) { gateway in
            var data: [Int: [UInt8]] = [:]
            for index in 0..<60 {
                data[index] = gatewayTestBytes(64, seed: UInt64(index))
                #expect(try await gateway.request(.PUT, "/object/a\(index)", body: data[index]).status == 201)
            }
            let before = gateway.store.gates
            let added = try await gateway.addNode()
            let after = gateway.store.gates
            #expect(after.count == 4)
            #expect(zip(before, after).allSatisfy { $0 === $1 }, "the old backends keep their gates")
            let moved = (0..<60).filter { Self.expectedOwners(gateway, key: "object/a\($0)", count: 1) == [added] }
            #expect(!moved.isEmpty)
            for index in 0..<60 {
                let got = try await gateway.request(.GET, "/object/a\(index)")
                #expect(got.status == 200)
                #expect(got.body == data[index])
            }
            let node = gateway.node(added)
            #expect(
                await gatewayEventually {
                    for index in moved where !(await node.has("object/a\(index)")) { return false }
                    return true
                })
            // A delete reaches the old copy too: the key does not come back through the fallback.
            #expect(try await gateway.request(.DELETE, "/object/a\(moved[0])").status == 204)
            #expect(try await gateway.request(.GET, "/object/a\(moved[0])").status == 404)
            #expect(await gateway.holders("object/a\(moved[0])").isEmpty)
        }
    }

    @Test("conditional writes, reads and deletes")
    func conditions() async throws {
        try await withGateway(nodes: 3, configuration: GatewayHarness.configuration(replicas: 2)) {
            gateway async throws in
            let first = Array("first".utf8)
            #expect(try await gateway.request(.POST, "/store/c", body: first).status == 201)
            #expect(try await gateway.request(.POST, "/store/c", body: first).status == 409)
            #expect(
                try await gateway.request(.PUT, "/store/c", headers: [("If-None-Match", "*")], body: first).status
                    == 412)
            #expect(
                try await gateway.request(.PUT, "/store/c", headers: [("If-Match", "\"nope\"")], body: first).status
                    == 412)
            #expect(
                try await gateway.request(.PUT, "/store/absent", headers: [("If-Match", "*")], body: first).status
                    == 412)
            let second = Array("second".utf8)
            let replaced = try await gateway.request(
                .PUT, "/store/c", headers: [("If-Match", Digests.etag(first))], body: second)
            #expect(replaced.status == 204)
            #expect(
                try await gateway.request(.GET, "/store/c", headers: [("If-None-Match", Digests.etag(second))]).status
                    == 304)
            #expect(try await gateway.request(.GET, "/store/c", headers: [("If-Match", "\"nope\"")]).status == 412)
            #expect(try await gateway.request(.DELETE, "/store/c", headers: [("If-Match", "\"nope\"")]).status == 412)
            #expect(try await gateway.request(.GET, "/store/c").body == second)
            #expect(
                try await gateway.request(.DELETE, "/store/c", headers: [("If-Match", Digests.etag(second))]).status
                    == 204)
            #expect(try await gateway.request(.GET, "/store/c").status == 404)
        }
    }

    @Test("ranges on small and streamed objects")
    func ranges() async throws {
        try await withGateway(nodes: 2) { gateway in
            for size in [1000, 3 << 20] {
                let data = gatewayTestBytes(size, seed: UInt64(size))
                #expect(try await gateway.request(.PUT, "/store/r\(size)", body: data).status == 201)
                let part = try await gateway.request(.GET, "/store/r\(size)", headers: [("Range", "bytes=10-19")])
                #expect(part.status == 206)
                #expect(part.body == Array(data[10..<20]))
                #expect(part.header("content-range") == "bytes 10-19/\(size)")
                let suffix = try await gateway.request(.GET, "/store/r\(size)", headers: [("Range", "bytes=-5")])
                #expect(suffix.status == 206)
                #expect(suffix.body == Array(data[(size - 5)...]))
                let open = try await gateway.request(
                    .GET, "/store/r\(size)", headers: [("Range", "bytes=\(size - 3)-")])
                #expect(open.body == Array(data[(size - 3)...]))
                let outside = try await gateway.request(.GET, "/store/r\(size)", headers: [("Range", "bytes=\(size)-")])
                #expect(outside.status == 416)
                #expect(outside.header("content-range") == "bytes */\(size)")
                let head = try await gateway.request(.HEAD, "/store/r\(size)")
                #expect(head.header("content-length") == "\(size)")
                #expect(head.header("etag") == Digests.etag(data))
            }
        }
    }

    @Test("a 64 MiB object streams through the gateway to two replicas; a bad digest stores nothing")
    func largeObject() async throws {
        try await withGateway(nodes: 3, configuration: GatewayHarness.configuration(replicas: 2)) {
            gateway async throws in
            let block = gatewayTestBytes(1 << 20, seed: 64)
            var data: [UInt8] = []
            data.reserveCapacity(64 << 20)
            for index in 0..<64 {
                var copy = block
                copy[0] = UInt8(index)
                data += copy
            }
            let md5 = Digests.base64(Digests.md5(data))
            let put = try await gateway.request(.PUT, "/store/big", headers: [("Content-MD5", md5)], body: data)
            #expect(put.status == 201, "\(put.status) \(put.text)")
            #expect(put.header("etag") == Digests.etag(data))
            let got = try await gateway.request(.GET, "/store/big")
            #expect(got.status == 200)
            #expect(got.body.count == data.count)
            #expect(Digests.md5(got.body) == Digests.md5(data))
            let holders = await gateway.holders("store/big")
            #expect(holders.count == 2)
            for holder in holders {
                #expect(try await gateway.node(holder).bytes("store/big").map(Digests.md5) == Digests.md5(data))
            }

            // The same size with a wrong Content-MD5: 400, and no node keeps anything of it.
            let bad = try await gateway.request(
                .PUT, "/store/bad", headers: [("Content-MD5", Digests.base64(Digests.md5([1])))], body: data)
            #expect(bad.status == 400)
            #expect(bad.isJSONError("digest_mismatch"))
            #expect(await gateway.holders("store/bad").isEmpty)
            // A small one too (buffered: checked before anything is sent).
            let small = try await gateway.request(
                .PUT, "/store/big", headers: [("Content-MD5", Digests.base64(Digests.md5([1])))], body: [2])
            #expect(small.status == 400)
            #expect(try await gateway.request(.HEAD, "/store/big").header("content-length") == "\(64 << 20)")
        }
    }
}

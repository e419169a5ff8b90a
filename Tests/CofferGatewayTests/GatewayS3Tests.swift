import AsyncHTTPClient
import CofferCore
import CofferHTTP
import CofferTestKit
import Foundation
import NIOCore
import NIOHTTP1
import Testing

@testable import CofferGateway

/// The gateway's S3 path end to end, in process: several moto servers (one per backend), ``S3Backend``s over them, a
/// ``ShardedStore`` and the real ``CofferHTTPServer`` on 127.0.0.1:0, driven over HTTP. Serialized: each test runs
/// three moto processes, which is enough load for a 2-core machine.
@Suite(.serialized, .timeLimit(.minutes(5)))
struct GatewayS3Tests {
    @Test("round trips through /object/ and /store/ over three motos: 0 B to 20 MiB, HEAD, DELETE, then 404")
    func roundTrips() async throws {
        try await withS3Gateway(motos: 3) { rig in
            let client = try await HTTPTestClient.connect(port: rig.port, timeout: .seconds(120))
            defer { client.close() }
            for (index, size) in [0, 1000, 1 << 20, 20 << 20].enumerated() {
                let data = S3TestData.bytes(size, seed: UInt64(index + 1))
                let etag = "\"" + S3TestData.md5Hex(data) + "\""
                for (path, key) in [
                    ("/object/rt\(index)", "object/rt\(index)"), ("/store/rt/a%20b/\(index)", "store/rt/a b/\(index)"),
                ] {
                    let put = try await client.send(.PUT, path, body: data)
                    #expect(put.status == 201, "PUT \(path) (\(size) B): \(put.status) \(put.text)")
                    #expect(put.header("etag") == etag)
                    let got = try await client.send(.GET, path)
                    #expect(got.status == 200, "GET \(path): \(got.status)")
                    #expect(got.body.count == size)
                    #expect(Self.same(got.body, data), "GET \(path) (\(size) B) is not byte-exact")
                    #expect(got.header("etag") == etag)
                    let head = try await client.send(.HEAD, path)
                    #expect(head.status == 200)
                    #expect(head.header("content-length") == "\(size)")
                    #expect(head.header("etag") == etag)
                    // The object sits in exactly one bucket: the one its ranking puts first.
                    #expect(try await rig.holders(key) == [rig.owners(key)[0]], "\(key)")

                    #expect(try await client.send(.DELETE, path).status == 204)
                    let gone = try await client.send(.GET, path)
                    #expect(gone.status == 404)
                    #expect(gone.isJSONError("not_found"), "\(gone.text)")
                    #expect(try await client.send(.HEAD, path).status == 404)
                    #expect(try await client.send(.DELETE, path).status == 404)
                    #expect(try await rig.holders(key).isEmpty)
                }
            }
        }
    }

    @Test("form-typed bodies round-trip byte-exact and keep their Content-Type")
    func formContentTypes() async throws {
        try await withS3Gateway(motos: 3) { rig in
            let client = try await HTTPTestClient.connect(port: rig.port, timeout: .seconds(60))
            defer { client.close() }
            // What curl -d sends by default: moto (a form-parsing web framework) would eat such a body as fields.
            let cases: [(path: String, type: String, body: [UInt8])] = [
                ("/object/form1", "application/x-www-form-urlencoded", Array("a=1&b=two&c=%20x&d".utf8)),
                ("/store/form/binary", "application/x-www-form-urlencoded", S3TestData.bytes(256 << 10, seed: 5)),
                ("/store/form/multi", "multipart/form-data; boundary=xyz", Array("--xyz\r\n\r\nfield\r\n--xyz--".utf8)),
                ("/object/plain", "text/plain; charset=utf-8", Array("plain text".utf8)),
            ]
            for (path, type, body) in cases {
                let put = try await client.send(.PUT, path, headers: [("Content-Type", type)], body: body)
                #expect(put.status == 201, "PUT \(path) as \(type): \(put.status) \(put.text)")
                let got = try await client.send(.GET, path)
                #expect(got.status == 200)
                #expect(Self.same(got.body, body), "\(path) as \(type): got \(got.body.count) of \(body.count) bytes")
                #expect(got.header("content-type") == type)
                let head = try await client.send(.HEAD, path)
                #expect(head.header("content-type") == type)
                #expect(head.header("content-length") == "\(body.count)")
            }
            // The bytes in the bucket are the body itself (not parsed away), whatever the gateway remembers.
            let key = "store/form/binary"
            let owner = rig.owners(key)[0]
            let stored = try await withBackend(rig.motos[owner]) { backend in
                try await S3TestData.collect(try await backend.get(key, range: nil).body)
            }
            #expect(Self.same(stored, cases[1].body))
        }
    }

    @Test("/object/ ids are [A-Za-z0-9]{1,32}: other ids get a 4xx JSON error and reach no backend")
    func objectIDValidation() async throws {
        try await withS3Gateway(motos: 3) { rig in
            let longest = String(repeating: "Az9", count: 10) + "Q1"
            #expect(try await rig.request(.PUT, "/object/\(longest)", body: [1, 2, 3]).status == 201)
            #expect(try await rig.request(.GET, "/object/\(longest)").body == [1, 2, 3])
            let bad = [
                "bad-id", "has.dot", "under_score", longest + "x", "a%2Fb", "sp%20ace", "%C3%A9t%C3%A9", "a/b",
            ]
            for id in bad {
                for method in [HTTPMethod.PUT, .GET] {
                    let response = try await rig.request(method, "/object/\(id)", body: method == .PUT ? [7] : nil)
                    #expect((400..<500).contains(response.status), "\(method) /object/\(id): \(response.status)")
                    #expect(response.isJSONError(), "\(method) /object/\(id): \(response.text)")
                }
            }
            var stored: [String] = []
            for index in rig.motos.indices { stored += try await rig.keys(on: index) }
            #expect(stored == ["object/\(longest)"], "\(stored)")
        }
    }

    @Test("300 keys spread over every moto, each on exactly the backend its ranking puts first")
    func keysSpreadOverAllBackends() async throws {
        try await withS3Gateway(motos: 3) { rig in
            let count = 300
            try await withThrowingTaskGroup(of: Void.self) { group in
                for worker in 0..<6 {
                    group.addTask {
                        let client = try await HTTPTestClient.connect(port: rig.port, timeout: .seconds(60))
                        defer { client.close() }
                        for index in stride(from: worker, to: count, by: 6) {
                            let put = try await client.send(
                                .PUT, "/object/spread\(index)", body: S3TestData.bytes(64 + index, seed: UInt64(index)))
                            #expect(put.status == 201, "\(put.status) \(put.text)")
                        }
                    }
                }
                try await group.waitForAll()
            }
            var perBackend: [Int] = []
            var seen = Set<String>()
            for (index, moto) in rig.motos.enumerated() {
                let keys = try await moto.listKeys(bucket: "coffer")
                perBackend.append(keys.count)
                for key in keys {
                    #expect(seen.insert(key).inserted, "\(key) is on more than one backend")
                    #expect(rig.owners(key)[0] == index, "\(key) is on backend \(index), ranked \(rig.owners(key))")
                }
            }
            print("gateway over 3 motos: \(count) keys per backend \(perBackend)")
            #expect(seen == Set((0..<count).map { "object/spread\($0)" }))
            #expect(perBackend.allSatisfy { $0 >= count / 5 }, "uneven spread: \(perBackend)")
        }
    }

    @Test("R=1, a moto killed: its keys answer 503 with Retry-After at once, the others keep working")
    func deadBackendOneReplica() async throws {
        try await withS3Gateway(motos: 3) { rig in
            let client = try await HTTPTestClient.connect(port: rig.port, timeout: .seconds(60))
            defer { client.close() }
            var data: [Int: [UInt8]] = [:]
            for index in 0..<45 {
                data[index] = S3TestData.bytes(500 + index, seed: UInt64(index))
                #expect(try await client.send(.PUT, "/object/d\(index)", body: data[index]).status == 201)
            }
            let dead = 1
            let owner = { (index: Int) in rig.owners("object/d\(index)")[0] }
            let deadKeys = (0..<45).filter { owner($0) == dead }
            try #require(deadKeys.count >= 5, "too few keys on the backend to kill: \(deadKeys)")
            await rig.motos[dead].kill()

            // Every key once, right after the kill (the breaker is still closed for the first ones).
            var slowest = Duration.zero
            for index in 0..<45 {
                let start = ContinuousClock.now
                let got = try await client.send(.GET, "/object/d\(index)")
                let elapsed = ContinuousClock.now - start
                if owner(index) == dead {
                    slowest = max(slowest, elapsed)
                    #expect(got.status == 503, "GET of a key on the dead backend: \(got.status)")
                    #expect(got.header("retry-after") != nil)
                    #expect(got.isJSONError("unavailable"), "\(got.text)")
                    #expect(elapsed < .seconds(5), "a key on the dead backend took \(elapsed) to fail")
                } else {
                    #expect(got.status == 200, "GET of a key on a live backend: \(got.status) \(got.text)")
                    #expect(Self.same(got.body, data[index]!))
                }
            }
            #expect(await gatewayEventually { !rig.store.gates[dead].isHealthy }, "the breaker never opened")
            // Breaker open: the dead backend's keys fail without a request to it.
            var slowestOpen = Duration.zero
            for index in deadKeys {
                let start = ContinuousClock.now
                let got = try await client.send(.GET, "/object/d\(index)")
                slowestOpen = max(slowestOpen, ContinuousClock.now - start)
                #expect(got.status == 503 && got.header("retry-after") != nil && got.isJSONError("unavailable"))
            }
            print(
                "R=1, dead moto: 503 in at most \(slowest) right after the kill, \(slowestOpen) with the breaker open")
            #expect(slowestOpen < .seconds(5), "with the breaker open a dead key still took \(slowestOpen)")

            // The live backends take writes and serve them.
            for index in 0..<45 where owner(index) != dead {
                data[index] = S3TestData.bytes(700, seed: UInt64(1000 + index))
                let put = try await client.send(.PUT, "/object/d\(index)", body: data[index])
                #expect(put.status == 201, "overwrite on a live backend: \(put.status) \(put.text)")
                #expect(Self.same(try await client.send(.GET, "/object/d\(index)").body, data[index]!))
            }
            // A new key whose first choice is dead goes to the first healthy backend of its ranking (R=1).
            let fresh = try #require((0..<500).first { rig.owners("object/n\($0)")[0] == dead })
            let body = S3TestData.bytes(321, seed: 77)
            #expect(try await client.send(.PUT, "/object/n\(fresh)", body: body).status == 201)
            #expect(Self.same(try await client.send(.GET, "/object/n\(fresh)").body, body))
            #expect(try await rig.holders("object/n\(fresh)", skipping: dead) == [rig.owners("object/n\(fresh)")[1]])
        }
    }

    @Test("R=2, a moto killed: everything stays readable and writable; back empty, reads repair it")
    func deadBackendTwoReplicas() async throws {
        try await withS3Gateway(motos: 3, replicas: 2) { rig in
            let client = try await HTTPTestClient.connect(port: rig.port, timeout: .seconds(60))
            defer { client.close() }
            let keys = (0..<40).map { "store/r2/k\($0)" }
            var data: [String: [UInt8]] = [:]
            for (index, key) in keys.enumerated() {
                data[key] = S3TestData.bytes(300 + index, seed: UInt64(index))
                #expect(try await client.send(.PUT, "/" + key, body: data[key]).status == 201)
                #expect(try await rig.holders(key) == rig.owners(key).prefix(2).sorted(), "\(key)")
            }
            let dead = 0
            let deadKeys = keys.filter { rig.owners($0).prefix(2).contains(dead) }
            try #require(deadKeys.count >= 10, "too few keys on the backend to kill: \(deadKeys.count)")
            await rig.motos[dead].kill()

            // Readable: every key has a live replica.
            for key in keys {
                let start = ContinuousClock.now
                let got = try await client.send(.GET, "/" + key)
                #expect(got.status == 200, "GET \(key) with one replica dead: \(got.status) \(got.text)")
                #expect(Self.same(got.body, data[key]!))
                #expect(ContinuousClock.now - start < .seconds(5))
            }
            // Writable once the gateway knows the backend is down (until then, a write that included the dead replica
            // answers 503): a write goes to the first two *healthy* backends of the key's ranking.
            #expect(await gatewayEventually { !rig.store.gates[dead].isHealthy }, "the breaker never opened")
            let added = (40..<50).map { "store/r2/k\($0)" }
            for (index, key) in (keys + added).enumerated() {
                data[key] = S3TestData.bytes(200 + index, seed: UInt64(5000 + index))
                let put = try await client.send(.PUT, "/" + key, body: data[key])
                #expect(put.status == 201, "PUT \(key) with one backend dead: \(put.status) \(put.text)")
                let expected = rig.owners(key).filter { $0 != dead }.prefix(2).sorted()
                #expect(try await rig.holders(key, skipping: dead) == expected, "\(key)")
            }
            for key in keys + added {
                #expect(Self.same(try await client.send(.GET, "/" + key).body, data[key]!), "\(key)")
            }

            // Back, empty, on the same port: nothing is on it until reads find the gaps and repair them.
            try await rig.motos[dead].restart()
            #expect(await gatewayEventually { rig.store.gates[dead].isHealthy }, "the breaker never closed")
            #expect(try await rig.keys(on: dead).isEmpty)
            let owned = (keys + added).filter { rig.owners($0).prefix(2).contains(dead) }
            for key in keys + added {
                let got = try await client.send(.GET, "/" + key)
                #expect(got.status == 200, "GET \(key) after the restart: \(got.status) \(got.text)")
                #expect(Self.same(got.body, data[key]!), "\(key)")
            }
            let repaired = await gatewayEventually(within: .seconds(30)) {
                let present = Set((try? await rig.keys(on: dead)) ?? [])
                return owned.allSatisfy(present.contains)
            }
            let present = Set((try? await rig.keys(on: dead)) ?? [])
            print("R=2: the returning moto got \(present.count) of its \(owned.count) keys back by read repair")
            #expect(repaired, "not repaired: \(owned.filter { !present.contains($0) })")
            try await withBackend(rig.motos[dead]) { backend in
                for key in owned {
                    let bytes = try await S3TestData.collect(try await backend.get(key, range: nil).body)
                    #expect(Self.same(bytes, data[key]!), "the repaired copy of \(key) differs")
                }
            }

            // Fewer than R healthy backends: writes answer 503 at once (no sloppy success); reads still answer from
            // the one left when it holds the key.
            await rig.motos[1].kill()
            await rig.motos[2].kill()
            #expect(await gatewayEventually { rig.store.gates.filter(\.isHealthy).count == 1 })
            let start = ContinuousClock.now
            let refused = try await client.send(.PUT, "/store/r2/k0", body: [9])
            #expect(refused.status == 503, "\(refused.status) \(refused.text)")
            #expect(refused.header("retry-after") != nil && refused.isJSONError("unavailable"))
            #expect(ContinuousClock.now - start < .seconds(8))
            let left = Set(try await rig.keys(on: dead))
            for key in keys + added {
                let got = try await client.send(.GET, "/" + key)
                if left.contains(key) {
                    #expect(got.status == 200 && Self.same(got.body, data[key]!), "\(key): \(got.status)")
                } else {
                    #expect(got.status == 503, "\(key) is on no live backend: \(got.status)")
                }
            }
        }
    }

    /// Byte-exact comparison with `memcmp` (the tests are built without optimization).
    static func same(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        guard !a.isEmpty else { return true }
        return a.withUnsafeBytes { x in b.withUnsafeBytes { y in memcmp(x.baseAddress!, y.baseAddress!, x.count) == 0 }
        }
    }
}

/// A gateway in process over moto servers: ``S3Backend``s → ``ShardedStore`` (health checked every 100 ms, breakers
/// open after 2 failures, probes may take 5 s on a busy machine) → ``CofferHTTPServer`` on 127.0.0.1:0.
struct S3GatewayRig: Sendable {
    let motos: [MotoServer]
    let client: HTTPClient
    let store: ShardedStore
    let server: CofferHTTPServer
    let port: Int
    let healthTask: Task<Void, Never>

    static func start(motos count: Int, replicas: Int) async throws -> S3GatewayRig {
        let motos = try await MotoServer.startMany(count)
        let timeouts = S3Backend.Timeouts(connect: .seconds(2), firstByte: .seconds(30), read: .seconds(30))
        var clientConfiguration = S3Backend.clientConfiguration(timeouts: timeouts)
        clientConfiguration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 10
        let client = HTTPClient(
            eventLoopGroup: .singletonMultiThreadedEventLoopGroup, configuration: clientConfiguration)
        let backends: [any Backend] = motos.map {
            S3Backend(endpoint: $0.endpoint(), client: client, timeouts: timeouts, logger: gatewayTestLogger)
        }
        let configuration = ShardedStore.Configuration(
            replicas: replicas, healthInterval: .milliseconds(100),
            gate: BackendGate.Configuration(
                failureThreshold: 2, openCooldown: .milliseconds(300), probeTimeout: .seconds(5)))
        let store = ShardedStore(backends: backends, configuration: configuration, logger: gatewayTestLogger)
        let server = CofferHTTPServer(
            store: store,
            configuration: HTTPServerConfiguration(host: "127.0.0.1", port: 0, shutdownGracePeriod: .seconds(2)),
            logger: gatewayTestLogger)
        let address: SocketAddress
        do {
            address = try await server.start()
        } catch {
            try? await client.shutdown()
            for moto in motos { await moto.kill() }
            throw error
        }
        let healthTask = Task { _ = try? await store.run() }
        return S3GatewayRig(
            motos: motos, client: client, store: store, server: server, port: address.port!, healthTask: healthTask)
    }

    /// Stops the gateway and the motos; their logs are removed unless `keepLogs` (a failed test's post-mortem).
    func shutdown(keepLogs: Bool = false) async {
        healthTask.cancel()
        await server.shutdown()
        try? await client.shutdown()
        for moto in motos {
            await moto.kill()
            if keepLogs {
                print("kept moto log \(moto.logPath)")
            } else {
                try? FileManager.default.removeItem(atPath: moto.logPath)
            }
        }
    }

    /// One request on a fresh connection (an error answer may close the connection).
    func request(_ method: HTTPMethod, _ path: String, body: [UInt8]? = nil) async throws -> TestResponse {
        let connection = try await HTTPTestClient.connect(port: port, timeout: .seconds(60))
        defer { connection.close() }
        return try await connection.send(method, path, body: body)
    }

    /// The motos in the order `key`'s rendezvous ranking puts them (indices into ``motos``).
    func owners(_ key: String) -> [Int] {
        Rendezvous(ids: motos.map { $0.endpoint().id }).rank(key: key)
    }

    /// The keys in moto `index`'s bucket; none when the bucket does not exist (a restarted moto).
    func keys(on index: Int) async throws -> [String] {
        do {
            return try await motos[index].listKeys(bucket: "coffer")
        } catch let error as MotoServerError where error.description.contains("NoSuchBucket") {
            return []
        }
    }

    /// The motos whose bucket holds `key`, in index order (a dead one, `skipping`, is not asked).
    func holders(_ key: String, skipping: Int? = nil) async throws -> [Int] {
        var found: [Int] = []
        for index in motos.indices where index != skipping {
            if try await keys(on: index).contains(key) { found.append(index) }
        }
        return found
    }
}

/// Runs `body` against a fresh gateway over `motos` moto servers, and stops everything afterwards, whether `body`
/// throws or not.
func withS3Gateway(motos: Int, replicas: Int = 1, _ body: (S3GatewayRig) async throws -> Void) async throws {
    let rig = try await S3GatewayRig.start(motos: motos, replicas: replicas)
    do {
        try await body(rig)
    } catch {
        await rig.shutdown(keepLogs: true)
        throw error
    }
    await rig.shutdown()
}

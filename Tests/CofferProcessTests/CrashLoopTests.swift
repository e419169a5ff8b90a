import CofferTestKit
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension ProcessTests {
    /// The node killed with SIGKILL at random moments under concurrent load, restarted on the same directory each
    /// time: no acknowledged write is ever lost, and no blob is ever torn.
    @Suite struct CrashLoopTests {
        static let clients = 6
        static let keys = 32

        /// Each cycle: start (or restart) the node, check every key against the model, put it under load from
        /// several clients, SIGKILL it at a random moment. A key must hold its last acknowledged state, or the
        /// result of a mutation in flight at the kill, byte for byte with the ETag its MD5 gives. The last start
        /// is checked too, then stopped with SIGTERM (exit 0).
        ///
        /// `COFFER_CRASH_CYCLES` (default 20) sets the number of kills, `COFFER_CRASH_SEED` replays a schedule (the
        /// kill delays and the clients' choices; the interleaving of the clients is the machine's).
        @Test(.timeLimit(.minutes(30))) func killedUnderLoadLosesNothing() async throws {
            let cycles = Environment.integer("COFFER_CRASH_CYCLES", default: 20)
            let seed =
                ProcessInfo.processInfo.environment["COFFER_CRASH_SEED"].flatMap { UInt64($0) }
                ?? UInt64.random(in: 0...UInt64.max)
            print("crash-loop: seed=\(seed) (COFFER_CRASH_SEED=\(seed) replays it), cycles=\(cycles)")
            var generator = SeededGenerator(seed: seed)
            let model = CrashModel(keys: Self.keys)
            var recovered = (cut: 0, orphans: 0, milliseconds: 0)
            let started = ContinuousClock.now
            try await withNodeRunner { runner in
                for cycle in 0...cycles {
                    let node = try await runner.start()
                    let summary = try #require(node.recoverySummary, "no recovery summary in \(node.log)")
                    recovered.cut += Int(summary["bytes.cut"] ?? "") ?? 0
                    recovered.orphans += Int(summary["orphans.removed"] ?? "") ?? 0
                    recovered.milliseconds += Int(summary["ms"] ?? "") ?? 0
                    try await Self.checkEveryKey(node, model: model, cycle: cycle)
                    if cycle == cycles { break }
                    let delay = Duration.milliseconds(Int.random(in: 50...900, using: &generator))
                    let seeds = (0..<Self.clients).map { _ in generator.next() }
                    try await Self.load(node, model, seeds: seeds, delay: delay)
                }
                let last = try #require(runner.current)
                last.signal(SIGTERM)
                let exit = try await last.waitForExit(within: .seconds(20))
                #expect(exit == .exited(0), "after SIGTERM: \(exit)\n\(last.log)")
            }
            let counts = model.counts
            let seconds = (ContinuousClock.now - started).components.seconds
            print(
                "crash-loop: cycles=\(cycles) acked=\(counts.acknowledged) verified=\(counts.verified) "
                    + "inflight-applied=\(counts.inFlightApplied) inflight-dropped=\(counts.inFlightDropped) "
                    + "lost=\(counts.lost) torn=\(counts.torn) recovery: bytes-cut=\(recovered.cut) "
                    + "orphans-removed=\(recovered.orphans) ms=\(recovered.milliseconds) seconds=\(seconds)")
            let failures = model.failures
            #expect(
                failures.isEmpty,
                "\(failures.count) failures (seed \(seed)):\n\(failures.prefix(30).joined(separator: "\n"))")
            #expect(counts.lost == 0)
            #expect(counts.torn == 0)
            #expect(counts.verified == (cycles + 1) * Self.keys)
            // The load must have done something for the checks to mean anything.
            #expect(counts.acknowledged >= cycles * 5, "only \(counts.acknowledged) mutations acknowledged")
        }

        /// GETs every key and judges it against the model, which then takes what was seen.
        static func checkEveryKey(_ node: ChildNode, model: CrashModel, cycle: Int) async throws {
            let client = try await node.client()
            defer { client.close() }
            for key in 0..<model.keyCount {
                let response = try await client.send(.GET, CrashModel.path(key))
                model.check(key, observed: Observation(response), cycle: cycle)
            }
        }

        /// Runs one load worker per seed against `node` and SIGKILLs it after `delay` (the random moment of the
        /// crash, not a synchronization): the workers end when their connections die.
        static func load(_ node: ChildNode, _ model: CrashModel, seeds: [UInt64], delay: Duration) async throws {
            let port = try #require(node.port)
            model.killed = false
            await withTaskGroup(of: Void.self) { group in
                for seed in seeds {
                    group.addTask { await LoadWorker.run(model: model, port: port, seed: seed) }
                }
                try? await Task.sleep(for: delay)
                model.killed = true
                node.signal(SIGKILL)
            }
            let exit = try await node.waitForExit()
            #expect(exit == .signaled(SIGKILL))
        }
    }
}

import CofferCore
import CofferTestKit
import Testing

@testable import CofferGateway

/// The gateway's store gives every answer the ``BlobStoreConformance`` suite asks for, as the engine does: hashed
/// with one and two replicas, and on a shared volume, with and without its cache, over in-memory backends.
@Suite struct GatewayConformanceTests {
    @Test(
        "the sharded store passes the BlobStore conformance suite",
        arguments: [
            (ShardedStore.Placement.hashed, 1, false), (.hashed, 2, false), (.hashed, 2, true), (.shared, 1, false),
            (.shared, 1, true),
        ])
    func conformance(placement: ShardedStore.Placement, replicas: Int, cache: Bool) async throws {
        let fakes = (0..<3).map { FakeBackend(id: "fake://\($0)") }
        var configuration = ShardedStore.Configuration(
            replicas: replicas, placement: placement, cacheSize: cache ? 1 << 20 : 0)
        configuration.repair = false
        let store = ShardedStore(backends: fakes, configuration: configuration, logger: gatewayTestLogger)
        try await BlobStoreConformance.run(store)
    }
}

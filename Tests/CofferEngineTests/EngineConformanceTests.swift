import CofferTestKit
import Testing

@testable import CofferEngine

/// The log engine gives every answer the ``BlobStoreConformance`` suite asks for (the gateway is held to the same).
@Suite struct EngineConformanceTests {
    @Test("the engine passes the BlobStore conformance suite, inline and spilled")
    func conformance() async throws {
        try await withTestDirectory { directory async throws in
            try await withEngine(testConfiguration(directory)) { engine async throws in
                try await BlobStoreConformance.run(engine)
            }
        }
        // Everything spilled to its own file (the inline threshold below every body).
        try await withTestDirectory { directory async throws in
            try await withEngine(testConfiguration(directory) { $0.inlineThreshold = 1 }) { engine async throws in
                try await BlobStoreConformance.run(engine)
            }
        }
    }
}

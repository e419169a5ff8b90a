import Testing

@testable import CofferEngine

/// The encoders produce exactly the checked-in golden bytes. With `COFFER_REGENERATE_GOLDEN=1` the files are rewritten
/// instead (then re-verify them: `GoldenLayoutTests` checks them against the documented layout, not the encoder).
@Suite("Golden files: encoding")
struct GoldenEncodingTests {
    private func check(_ name: String, _ encoded: [UInt8]) throws {
        if GoldenFixtures.regenerating {
            try GoldenFixtures.regenerate(name, encoded)
            return
        }
        let golden = try GoldenFixtures.golden(name)
        #expect(encoded.count == golden.count, "\(name): length")
        if let first = zip(encoded, golden).enumerated().first(where: { $0.element.0 != $0.element.1 }) {
            Issue.record("\(name): first difference at byte \(first.offset)")
        }
        #expect(encoded == golden, "\(name)")
    }

    @Test("segment header")
    func segmentHeader() throws {
        try check(GoldenFixtures.segmentHeaderFile, GoldenFixtures.segmentHeader)
    }

    @Test("put-inline record")
    func putInline() throws {
        try check(GoldenFixtures.putInlineFile, GoldenFixtures.encode(GoldenFixtures.inlineRecord))
    }

    @Test("put-spill record")
    func putSpill() throws {
        try check(GoldenFixtures.putSpillFile, GoldenFixtures.encode(GoldenFixtures.spillRecord))
    }

    @Test("tombstone")
    func tombstone() throws {
        try check(GoldenFixtures.deleteFile, GoldenFixtures.encode(GoldenFixtures.deleteRecord))
    }

    @Test("spill file: header, data, block-CRC table, table CRC")
    func spillFile() async throws {
        try await withTestDirectory { directory async throws in
            try check(GoldenFixtures.spillFile, try GoldenFixtures.makeSpillFile(in: directory.path))
        }
    }

    @Test("encodedLength matches the bytes written")
    func encodedLength() {
        for record in [GoldenFixtures.inlineRecord, GoldenFixtures.spillRecord, GoldenFixtures.deleteRecord] {
            #expect(GoldenFixtures.encode(record).count == record.encodedLength)
        }
    }
}

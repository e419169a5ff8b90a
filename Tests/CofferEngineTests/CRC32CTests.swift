import CCRC32C
import CofferEngineTesting
import CofferTestKit
import NIOCore
import Testing

@testable import CofferEngine

/// CRC-32C known answers, hardware path against the portable table, and chaining.
@Suite("CRC32C")
struct CRC32CTests {
    /// Vectors from RFC 3720 (iSCSI), appendix B.4, plus the classic check value.
    static let vectors: [(name: String, bytes: [UInt8], crc: UInt32)] = [
        ("123456789", Array("123456789".utf8), 0xE306_9283),
        ("32 zero bytes", [UInt8](repeating: 0, count: 32), 0x8A91_36AA),
        ("32 0xFF bytes", [UInt8](repeating: 0xFF, count: 32), 0x62A8_AB43),
        ("32 ascending bytes", (0..<32).map { UInt8($0) }, 0x46DD_794E),
        ("32 descending bytes", (0..<32).reversed().map { UInt8($0) }, 0x113F_DB5C),
        ("empty", [], 0),
    ]

    @Test("known answers on both paths", arguments: 0..<vectors.count)
    func knownAnswers(_ index: Int) {
        let (name, bytes, expected) = Self.vectors[index]
        let hardware = bytes.withUnsafeBytes { coffer_crc32c(0, $0.baseAddress, $0.count) }
        let portable = bytes.withUnsafeBytes { coffer_crc32c_portable(0, $0.baseAddress, $0.count) }
        #expect(hardware == expected, "\(name)")
        #expect(portable == expected, "\(name)")
        #expect(CRC32C.checksum(bytes) == expected, "\(name)")
        #expect(CRC32C.checksum(ByteBuffer(bytes: bytes)) == expected, "\(name)")
    }

    @Test("the hardware path equals the portable path for many lengths and alignments")
    func hardwareMatchesPortable() {
        // This machine's answer is logged, so a run on a CPU without the instruction is visible.
        print("CRC32C hardware accelerated: \(CRC32C.isHardwareAccelerated)")
        var generator = SplitMix64(seed: 0xC0FF_EE00)
        let pool = generator.bytes(120_000)
        var lengths = Array(0...300)
        lengths += [511, 512, 513, 767, 768, 769, 775, 1023, 1024, 1536, 4095, 4096, 4097, 24_575, 24_576, 24_577]
        // Three 8 KiB streams, then three 256-byte streams, then single words and bytes.
        lengths += [24_576 + 768 + 7, 49_152, 49_152 + 767, 65_535, 65_536, 65_537, 69_000, 100_001, 119_992]
        pool.withUnsafeBytes { raw in
            for length in lengths {
                for alignment in 0..<8 where alignment + length <= raw.count {
                    let slice = UnsafeRawBufferPointer(rebasing: raw[alignment..<(alignment + length)])
                    for seed: UInt32 in [0, 0xFFFF_FFFF, 0x1234_5678] {
                        let hardware = coffer_crc32c(seed, slice.baseAddress, slice.count)
                        let portable = coffer_crc32c_portable(seed, slice.baseAddress, slice.count)
                        #expect(hardware == portable, "length \(length), alignment \(alignment), seed \(seed)")
                    }
                }
            }
        }
    }

    @Test("chaining: the CRC of a then b continues from the CRC of a, at every split point")
    func chaining() {
        let bytes = randomBytes(200, seed: 7)
        let whole = CRC32C.checksum(bytes)
        #expect(whole == bytes.withUnsafeBytes { coffer_crc32c_portable(0, $0.baseAddress, $0.count) })
        for split in 0...bytes.count {
            let first = Array(bytes[..<split])
            let second = Array(bytes[split...])
            #expect(CRC32C.checksum(second, continuing: CRC32C.checksum(first)) == whole, "split \(split)")
            let portableFirst = first.withUnsafeBytes { coffer_crc32c_portable(0, $0.baseAddress, $0.count) }
            let portable = second.withUnsafeBytes { coffer_crc32c_portable(portableFirst, $0.baseAddress, $0.count) }
            #expect(portable == whole, "split \(split)")
        }
    }

    @Test("ByteBuffer overloads honour the reader index and absolute offsets")
    func byteBufferOverloads() {
        let bytes = randomBytes(1000, seed: 11)
        var buffer = ByteBuffer(bytes: [0xAA, 0xBB, 0xCC] + bytes)
        buffer.moveReaderIndex(forwardBy: 3)
        #expect(CRC32C.checksum(buffer) == CRC32C.checksum(bytes))
        #expect(CRC32C.checksum(buffer, at: 3 + 100, length: 50) == CRC32C.checksum(Array(bytes[100..<150])))
        let head = CRC32C.checksum(buffer, at: 3, length: 400)
        #expect(CRC32C.checksum(buffer, at: 403, length: 600, continuing: head) == CRC32C.checksum(bytes))
    }
}

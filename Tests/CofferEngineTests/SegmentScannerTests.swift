import Foundation
import NIOCore
import Testing

@testable import CofferEngine

/// The scanner reads segments through an 8 MiB window: records that straddle the window's edge, and a resync search
/// that crosses it, must behave as in a small file.
@Suite("Segment scanner")
struct SegmentScannerTests {
    /// A segment: header, then `sizes.count` inline records with data of those sizes. Returns bytes and offsets.
    private func segment(_ sizes: [Int]) -> (bytes: [UInt8], offsets: [Int]) {
        var buffer = SegmentFile.header(id: 1, createdMillis: 0)
        var offsets: [Int] = []
        for (i, size) in sizes.enumerated() {
            offsets.append(buffer.writerIndex)
            let meta = PutMeta(
                size: Int64(size), modifiedMillis: 0, md5: Digest128(high: 0, low: 0), contentType: "x")
            LogRecord(
                sequence: UInt64(i + 1), kind: .putInline, key: "r\(i)", meta: meta,
                data: ByteBuffer(repeating: UInt8(truncatingIfNeeded: i), count: size)
            ).encode(into: &buffer)
        }
        return (Array(buffer.readableBytesView), offsets)
    }

    private func scan(_ bytes: [UInt8], in directory: TestDirectory) throws -> [(sequence: UInt64, offset: Int64)] {
        let path = directory.path + "/scan.seg"
        try Files.write(path, bytes)
        let io = PosixFileIO()
        let fd = try io.open(path, flags: O_RDONLY, mode: 0)
        defer { try? io.close(fd) }
        var scanner = SegmentScanner(io: io, fd: fd, size: Int64(bytes.count))
        var found: [(UInt64, Int64)] = []
        var offset = Int64(Format.segmentHeaderSize)
        while offset < Int64(bytes.count) {
            switch try scanner.record(at: offset) {
            case .valid(let record, let length):
                found.append((record.sequence, offset))
                offset += Int64(length)
            case .invalid:
                guard let next = try scanner.nextValidRecord(after: offset) else { return found }
                offset = next
            }
        }
        return found
    }

    @Test("records straddling the 8 MiB window edge are read whole")
    func straddlingRecords() async throws {
        try await withTestDirectory { directory async throws in
            // 3 MiB records: the third and sixth straddle the 8 MiB and 16 MiB edges of the first windows.
            let (bytes, offsets) = segment(Array(repeating: 3 << 20, count: 6) + [10, 20])
            let found = try scan(bytes, in: directory)
            #expect(found.map(\.sequence) == Array(1...8))
            #expect(found.map { Int($0.offset) } == offsets)
        }
    }

    @Test("a resync search that crosses the window edge finds the next record")
    func resyncAcrossWindow() async throws {
        try await withTestDirectory { directory async throws in
            // A 9 MiB record whose header is damaged: the search for the next record runs past the first window.
            var (bytes, offsets) = segment([100, 9 << 20, 100, 100])
            bytes[offsets[1] + 1] ^= 0xFF
            let found = try scan(bytes, in: directory)
            #expect(found.map(\.sequence) == [1, 3, 4])
            #expect(found.map { Int($0.offset) } == [offsets[0], offsets[2], offsets[3]])
        }
    }

    @Test("the magic split across the window edge is still found")
    func magicOnWindowEdge() async throws {
        try await withTestDirectory { directory async throws in
            // Garbage up to two bytes before 8 MiB, then a record: its magic straddles the first window's end.
            let window = 8 << 20
            var bytes = Array(SegmentFile.header(id: 1, createdMillis: 0).readableBytesView)
            bytes += [UInt8](repeating: 0xEE, count: window - 2 - bytes.count)
            let record = segment([50]).bytes.dropFirst(Format.segmentHeaderSize)
            bytes += record
            let found = try scan(bytes, in: directory)
            #expect(found.map(\.sequence) == [1])
            #expect(found.first?.offset == Int64(window - 2))
        }
    }

    @Test("headerLength trusts an intact header even when the record is torn")
    func headerLength() async throws {
        try await withTestDirectory { directory async throws in
            let (bytes, offsets) = segment([1000])
            let torn = Array(bytes[..<(bytes.count - 10)])
            let path = directory.path + "/torn.seg"
            try Files.write(path, torn)
            let io = PosixFileIO()
            let fd = try io.open(path, flags: O_RDONLY, mode: 0)
            defer { try? io.close(fd) }
            var scanner = SegmentScanner(io: io, fd: fd, size: Int64(torn.count))
            guard case .invalid = try scanner.record(at: Int64(offsets[0])) else {
                Issue.record("a torn record must not read as valid")
                return
            }
            #expect(try scanner.headerLength(at: Int64(offsets[0])) == bytes.count - offsets[0])
            #expect(try scanner.headerLength(at: Int64(offsets[0] + 1)) == nil)
        }
    }
}

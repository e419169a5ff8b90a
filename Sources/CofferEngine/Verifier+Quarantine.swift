import CofferCore
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// `<dir>/quarantine/MANIFEST`: one line per item a repair copied into `quarantine/`, so a later verify knows which
/// damaged segment ranges were already handled (they stay in their segment: recovery never cuts the middle of the
/// log). Lines are space-separated fields:
///
/// ```
/// region <segment id, 16 hex> <offset> <length> <CRC32C of the bytes, 8 hex> <file> <keys>
/// spill <spill id, 16 hex> 0 <length> <CRC32C of the file, 8 hex> <file> <keys>
/// missing-spill <spill id, 16 hex> 0 0 - - <keys>
/// ```
///
/// `<keys>` is the hex of each key's UTF-8 bytes, comma-separated, or `-` when no key could be read. Lines starting
/// with `#` are comments.
struct QuarantineManifest {
    static let fileName = "MANIFEST"
    static let header = "# coffer quarantine manifest v1: kind id offset length crc32c file keys(hex)\n"

    private struct Range: Hashable {
        var segment: UInt32
        var offset: Int64
        var length: Int64
    }

    private var regions: [Range: Set<UInt32>] = [:]

    /// Reads the manifest; an absent one is empty. Blocking.
    static func load(directory: String, io: any FileIO) throws -> QuarantineManifest {
        var manifest = QuarantineManifest()
        let fd: CInt
        do {
            fd = try io.open(directory + "/" + fileName, flags: O_RDONLY, mode: 0)
        } catch let error as IOError where error.errnoCode == ENOENT {
            return manifest
        }
        defer { try? io.close(fd) }
        let bytes = try io.read(fd, count: Int(try io.fileSize(fd)), offset: 0)
        for line in String(decoding: bytes.readableBytesView, as: UTF8.self).split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count >= 5, fields[0] == "region", let segment = UInt64(fields[1], radix: 16),
                let offset = Int64(fields[2]), let length = Int64(fields[3]), let crc = UInt32(fields[4], radix: 16),
                segment <= UInt64(UInt32.max)
            else { continue }
            manifest.regions[Range(segment: UInt32(segment), offset: offset, length: length), default: []].insert(crc)
        }
        return manifest
    }

    /// Whether some line names exactly this range (the bytes still have to be compared).
    func hasRegion(_ region: DamagedRegion) -> Bool {
        regions[Range(segment: region.segment, offset: region.offset, length: region.length)] != nil
    }

    /// Whether a line names exactly this range with bytes of this CRC.
    func matches(_ region: DamagedRegion, crc: UInt32) -> Bool {
        regions[Range(segment: region.segment, offset: region.offset, length: region.length)]?.contains(crc) ?? false
    }

    static func line(
        kind: String, id: UInt64, offset: Int64, length: Int64, crc: UInt32?, file: String?, keys: [String]
    ) -> String {
        let crcField = crc.map { hex8($0) } ?? "-"
        let keyField = keys.isEmpty ? "-" : keys.map { hexBytes(Array($0.utf8)) }.joined(separator: ",")
        return "\(kind) \(hex16(id)) \(offset) \(length) \(crcField) \(file ?? "-") \(keyField)\n"
    }

    static func hex8(_ value: UInt32) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 8 - digits.count) + digits
    }

    static func hexBytes(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef")
        return String(bytes.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 0x0F)]] })
    }
}

extension Verifier {
    /// Copies `count` bytes at `offset` of `source` into a new file `quarantine/<name>`, fsyncs it, and returns the
    /// CRC32C of the bytes. Blocking.
    ///
    /// Durability: the copy's bytes are durable on return; its name once `quarantine/` is fsynced.
    /// Errors: `IOError` (EEXIST when the name is taken).
    func quarantineCopy(from source: String, offset: Int64, count: Int64?, to name: String) throws -> UInt32 {
        let input = try io.open(source, flags: O_RDONLY, mode: 0)
        defer { try? io.close(input) }
        let end = try count.map { offset + $0 } ?? io.fileSize(input)
        let output = try io.open(quarantinePath + "/" + name, flags: O_WRONLY | O_CREAT | O_EXCL, mode: 0o644)
        defer { try? io.close(output) }
        var crc: UInt32 = 0
        var position = offset
        while position < end {
            let chunk = try io.read(input, count: Int(min(8 << 20, end - position)), offset: position)
            if chunk.readableBytes == 0 { break }
            crc = CRC32C.checksum(chunk, continuing: crc)
            try io.writeAll(output, chunk, offset: position - offset)
            position += Int64(chunk.readableBytes)
        }
        try io.fsync(output)
        return crc
    }

    /// Appends `lines` to `quarantine/MANIFEST` (creating it with its header line) and fsyncs it. Blocking.
    ///
    /// Durability: durable on return, together with `quarantine/` itself (fsynced here).
    /// Errors: `IOError`.
    func appendToManifest(_ lines: [String]) throws {
        let path = quarantinePath + "/" + QuarantineManifest.fileName
        let fd = try io.open(path, flags: O_WRONLY | O_CREAT, mode: 0o644)
        defer { try? io.close(fd) }
        let size = try io.fileSize(fd)
        var buffer = ByteBuffer()
        if size == 0 { buffer.writeString(QuarantineManifest.header) }
        for line in lines { buffer.writeString(line) }
        try io.writeAll(fd, buffer, offset: size)
        try io.fsync(fd)
        try io.syncDirectory(quarantinePath)
    }
}

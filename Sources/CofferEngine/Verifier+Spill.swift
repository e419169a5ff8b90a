import CofferCore
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension Verifier {
    /// Verifies the spill file of every live put-spill record, block by block, and lists the files in `blobs/` that no
    /// live record references.
    func checkSpillFiles(report: inout VerifyReport, newest: [BlobKey: Newest]) throws {
        var referenced = Set<UInt64>()
        let alreadyDamaged = Set(report.damagedBlobs.map { BlobKey(unchecked: $0.key) })
        for (key, entry) in newest.sorted(by: { $0.key.rawValue.utf8.lexicographicallyPrecedes($1.key.rawValue.utf8) })
        {
            guard let meta = entry.meta, meta.spillID != 0 else { continue }
            referenced.insert(meta.spillID)
            guard let (problem, detail) = try checkSpill(meta, report: &report), !alreadyDamaged.contains(key) else {
                continue
            }
            report.damagedBlobs.append(
                DamagedBlob(
                    key: key.rawValue, problem: problem, detail: detail, segment: entry.segment, offset: entry.offset,
                    sequence: entry.sequence, spillID: meta.spillID))
        }
        for name in try listIfPresent(blobsPath).sorted() {
            if let id = parseHexName(name, suffix: Format.spillSuffix), referenced.contains(id) { continue }
            report.orphanSpillFiles.append(name)
        }
    }

    /// `nil` when the spill file matches its record and every block its table entry; what is wrong otherwise.
    /// Blocking.
    ///
    /// Errors: `IOError` other than a missing file (an unreadable file is not called damaged).
    func checkSpill(_ meta: PutMeta, report: inout VerifyReport) throws -> (DamagedBlob.Problem, String)? {
        let name = hex16(meta.spillID) + Format.spillSuffix
        let fd: CInt
        do {
            fd = try io.open(blobsPath + "/" + name, flags: O_RDONLY, mode: 0)
        } catch let error as IOError where error.errnoCode == ENOENT {
            return (.spillFileMissing, "spill file blobs/\(name) is missing")
        }
        defer { try? io.close(fd) }
        let damaged = { (detail: String) in (DamagedBlob.Problem.spillFileDamaged, "blobs/\(name): \(detail)") }
        let size = try io.fileSize(fd)
        let blockSize = Int(meta.spillBlockSize)
        let blocks = Format.spillBlockCount(length: meta.size, blockSize: max(blockSize, 1))
        let tableOffset = Format.spillTableOffset(length: meta.size)
        let expected = tableOffset + Int64(blocks * 4 + 4)
        let header = try io.read(fd, count: Format.spillHeaderSize, offset: 0)
        report.bytesRead += Int64(header.readableBytes)
        guard header.readableBytes == Format.spillHeaderSize else { return damaged("shorter than its header") }
        if let problem = Self.headerProblem(header, meta: meta) { return damaged(problem) }
        guard size >= expected else { return damaged("\(size) bytes, its record needs \(expected)") }
        let table = try io.read(fd, count: blocks * 4 + 4, offset: tableOffset)
        report.bytesRead += Int64(table.readableBytes)
        guard table.readableBytes == blocks * 4 + 4 else { return damaged("block table is cut short") }
        let tableCRC = CRC32C.checksum(table, at: table.readerIndex, length: blocks * 4)
        guard table.getInteger(at: table.readerIndex + blocks * 4, endianness: .little, as: UInt32.self) == tableCRC
        else { return damaged("block table fails its CRC") }
        guard tableCRC == meta.spillTableCRC else { return damaged("block table does not match its record") }
        var bad: [Int] = []
        let blocksPerRead = 16
        var block = 0
        while block < blocks {
            let start = Int64(block) * Int64(blockSize)
            let count = Int(min(Int64(blocksPerRead * blockSize), meta.size - start))
            let data = try io.read(fd, count: count, offset: Int64(Format.spillHeaderSize) + start)
            report.bytesRead += Int64(data.readableBytes)
            guard data.readableBytes == count else { return damaged("data is cut short") }
            var done = 0
            while done < count {
                let n = min(blockSize, count - done)
                let stored = table.getInteger(at: table.readerIndex + block * 4, endianness: .little, as: UInt32.self)
                if CRC32C.checksum(data, at: data.readerIndex + done, length: n) != stored { bad.append(block) }
                done += n
                block += 1
            }
        }
        report.spillFilesVerified += 1
        report.spillBlocksVerified += blocks
        guard bad.isEmpty else {
            let list = bad.prefix(8).map(String.init).joined(separator: ", ") + (bad.count > 8 ? ", ..." : "")
            return damaged("\(bad.count) of \(blocks) blocks fail their checksum (block \(list))")
        }
        return nil
    }

    /// What is wrong with a spill header, checked against the record; `nil` when it matches.
    private static func headerProblem(_ header: ByteBuffer, meta: PutMeta) -> String? {
        let at = header.readerIndex
        func u64(_ offset: Int) -> UInt64 { header.getInteger(at: at + offset, endianness: .little, as: UInt64.self)! }
        func u32(_ offset: Int) -> UInt32 { header.getInteger(at: at + offset, endianness: .little, as: UInt32.self)! }
        if u32(Format.spillHeaderCRCOffset) != CRC32C.checksum(header, at: at, length: Format.spillHeaderCRCOffset) {
            return "header fails its CRC"
        }
        if u64(Format.spillHeaderMagicOffset) != Format.spillMagic { return "header magic is wrong" }
        if u64(Format.spillHeaderIDOffset) != meta.spillID { return "header names another spill id" }
        if u64(Format.spillHeaderLengthOffset) != UInt64(meta.size) { return "header length differs from its record" }
        if u32(Format.spillHeaderBlockSizeOffset) != meta.spillBlockSize || meta.spillBlockSize == 0 {
            return "header block size differs from its record"
        }
        return nil
    }
}

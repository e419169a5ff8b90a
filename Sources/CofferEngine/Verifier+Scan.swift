import CofferCore
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

extension Verifier {
    /// The newest valid record of a key, as recovery would index it.
    struct Newest {
        var sequence: UInt64
        var segment: UInt32
        var offset: Int64
        /// `nil` for a tombstone.
        var meta: PutMeta?
    }

    /// The whole check; the caller holds the lock. Blocking; reads only.
    ///
    /// Errors: `IOError` when a segment or spill file cannot be read.
    func scan() throws -> VerifyReport {
        var report = VerifyReport(directory: directory)
        let manifest = try QuarantineManifest.load(directory: quarantinePath, io: io)
        var newest: [BlobKey: Newest] = [:]
        let ids = try listIfPresent(segmentsPath)
            .compactMap { parseHexName($0, suffix: Format.segmentSuffix) }
            .filter { $0 > 0 && $0 <= UInt64(UInt32.max) }
            .map { UInt32($0) }
            .sorted()
        for (position, id) in ids.enumerated() {
            try scanSegment(
                id, isLast: position == ids.count - 1, manifest: manifest, report: &report, newest: &newest)
        }
        findDamagedBlobs(report: &report, newest: newest)
        try checkSpillFiles(report: &report, newest: newest)
        report.liveBlobs = newest.values.filter { $0.meta != nil }.count
        return report
    }

    func listIfPresent(_ path: String) throws -> [String] {
        do {
            return try io.listDirectory(path)
        } catch let error as IOError where error.errnoCode == ENOENT {
            return []
        }
    }

    /// Scans one segment the way recovery does: valid records go to `newest`, bad ranges become regions.
    private func scanSegment(
        _ id: UInt32, isLast: Bool, manifest: QuarantineManifest, report: inout VerifyReport,
        newest: inout [BlobKey: Newest]
    ) throws {
        let fd = try io.open(segmentsPath + "/" + SegmentFile.fileName(id: id), flags: O_RDONLY, mode: 0)
        defer { try? io.close(fd) }
        let size = try io.fileSize(fd)
        report.segmentsScanned += 1
        report.bytesRead += size
        var scanner = SegmentScanner(io: io, fd: fd, size: size)
        let headerValid =
            try scanner.bytes(at: 0, count: Format.segmentHeaderSize).map { SegmentFile.validHeader($0, id: id) }
            ?? false
        // Intact records of a segment with a damaged header: recovery never indexes them.
        var stranded: [DamagedRecord] = []
        var regions: [DamagedRegion] = []
        var offset = Int64(Format.segmentHeaderSize)
        while offset < size {
            switch try scanner.record(at: offset) {
            case .valid(let record, let length):
                if headerValid {
                    report.recordsVerified += 1
                    let key = BlobKey(unchecked: record.key)
                    if record.sequence > newest[key]?.sequence ?? 0 {
                        newest[key] = Newest(
                            sequence: record.sequence, segment: id, offset: offset, meta: record.meta)
                    }
                } else {
                    stranded.append(
                        DamagedRecord(
                            offset: offset, headerIntact: true, length: Int64(length), key: record.key,
                            sequence: record.sequence, kind: Self.kindName(record.kind),
                            spillID: record.meta.flatMap { $0.spillID == 0 ? nil : $0.spillID }, intact: true))
                }
                offset += Int64(length)
            case .invalid:
                // Exactly recovery's rule: an intact header is trusted for its length; otherwise search byte by byte.
                let next = try scanner.resumeOffset(afterInvalidAt: offset)
                let end = next ?? size
                let kind: DamagedRegion.Kind = next != nil ? .corrupt : (isLast ? .tornTail : .corruptTail)
                let records = try attribute(&scanner, from: offset, to: end)
                regions.append(
                    DamagedRegion(kind: kind, segment: id, offset: offset, length: end - offset, records: records))
                offset = end
            }
        }
        if !headerValid {
            if isLast && stranded.isEmpty {
                // Nothing valid in it: a crash while the segment was being created. Recovery moves it away.
                let records = regions.flatMap(\.records)
                regions = [DamagedRegion(kind: .tornTail, segment: id, offset: 0, length: size, records: records)]
            } else {
                let header = DamagedRegion(
                    kind: .segmentHeader, segment: id, offset: 0, length: min(size, Int64(Format.segmentHeaderSize)),
                    records: stranded)
                regions.insert(header, at: 0)
            }
        }
        for i in regions.indices where manifest.hasRegion(regions[i]) {
            let region = regions[i]
            let bytes = try scanner.bytes(at: region.offset, count: Int(region.length))
            regions[i].quarantined = bytes.map { manifest.matches(region, crc: CRC32C.checksum($0)) } ?? false
        }
        report.regions += regions
    }

    /// Best-effort reading of the records in a damaged range: follows intact headers, stops at the first damaged one.
    private func attribute(_ scanner: inout SegmentScanner, from start: Int64, to end: Int64) throws -> [DamagedRecord]
    {
        var records: [DamagedRecord] = []
        var position = start
        while position < end && records.count < 1000 {
            let record = try readDamaged(&scanner, at: position, limit: end)
            records.append(record)
            guard record.headerIntact, let length = record.length, length > 0 else { break }
            position += length
        }
        return records
    }

    /// What can still be read of the record at `offset`: the fields of its header (trusted when the header CRC holds,
    /// taken as they are otherwise), its key when the key bytes are UTF-8 inside `limit`, its spill id.
    private func readDamaged(_ scanner: inout SegmentScanner, at offset: Int64, limit: Int64) throws -> DamagedRecord {
        var record = DamagedRecord(offset: offset, headerIntact: false)
        guard let head = try scanner.bytes(at: offset, count: Format.recordHeaderSize) else { return record }
        let at = head.readerIndex
        let kindByte = head.getInteger(at: at + Format.recordKindOffset, as: UInt8.self)!
        let keyLength = Int(
            head.getInteger(at: at + Format.recordKeyLengthOffset, endianness: .little, as: UInt16.self)!)
        let metaLength = Int(
            head.getInteger(at: at + Format.recordMetaLengthOffset, endianness: .little, as: UInt32.self)!)
        let sequence = head.getInteger(at: at + Format.recordSequenceOffset, endianness: .little, as: UInt64.self)!
        var keyLimit = limit
        if case .success(let header) = RecordHeader.parse(head, at: at) {
            record.headerIntact = true
            record.length = Int64(header.length)
            record.sequence = header.sequence
            record.kind = Self.kindName(header.kind)
            keyLimit = scanner.size
        }
        let keyStart = offset + Int64(Format.recordHeaderSize)
        guard (1...BlobKey.maxUTF8Length).contains(keyLength), keyStart + Int64(keyLength) <= keyLimit,
            let keyBytes = try scanner.bytes(at: keyStart, count: keyLength),
            let key = String(validating: keyBytes.readableBytesView, as: UTF8.self)
        else { return record }
        record.key = key
        if !record.headerIntact {
            record.sequence = sequence
            record.kind = RecordKind(rawValue: kindByte).map(Self.kindName)
        }
        let metaStart = keyStart + Int64(keyLength)
        if kindByte == RecordKind.putSpill.rawValue, metaLength >= Format.putMetaFixedSize,
            let meta = try scanner.bytes(at: metaStart, count: Format.putMetaFixedSize),
            let spillID = meta.getInteger(
                at: meta.readerIndex + Format.metaSpillIDOffset, endianness: .little, as: UInt64.self),
            spillID != 0
        {
            record.spillID = spillID
        }
        return record
    }

    static func kindName(_ kind: RecordKind) -> String {
        switch kind {
        case .putInline: return "put-inline"
        case .putSpill: return "put-spill"
        case .delete: return "delete"
        }
    }

    /// A key is damaged when a damaged (or stranded) record of it is newer than its newest valid record. Torn tails
    /// are not damage (the write was never acknowledged), and quarantined regions were already handled.
    private func findDamagedBlobs(report: inout VerifyReport, newest: [BlobKey: Newest]) {
        var damaged: [BlobKey: DamagedBlob] = [:]
        for region in report.regions where region.kind != .tornTail && !region.quarantined {
            for record in region.records {
                guard let name = record.key, let sequence = record.sequence else { continue }
                let key = BlobKey(unchecked: name)
                guard sequence > newest[key]?.sequence ?? 0, sequence > damaged[key]?.sequence ?? 0 else { continue }
                let problem: DamagedBlob.Problem = record.intact ? .segmentHeaderDamaged : .recordDamaged
                let what =
                    record.intact
                    ? "its newest record is in segment \(region.segment), whose header is damaged"
                    : "its newest record fails its checks (\(record.headerIntact ? "body" : "header") damaged)"
                let served =
                    newest[key].map { $0.meta == nil ? "answers not found" : "serves version \($0.sequence)" }
                    ?? "answers not found"
                damaged[key] = DamagedBlob(
                    key: name, problem: problem, detail: "\(what); a node started on this directory \(served)",
                    segment: region.segment, offset: record.offset, sequence: sequence, spillID: record.spillID)
            }
        }
        report.damagedBlobs = damaged.values.sorted { ($0.segment, $0.offset) < ($1.segment, $1.offset) }
    }
}

import CofferCore
import Logging
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What recovery hands to a new engine.
struct Recovered: Sendable {
    var state: LogEngine.State
    var writer: LogEngine.WriterState
    var report: RecoveryReport
    var nextSpillID: UInt64
    /// Set by `open` once recovery is done.
    var reserve = SpaceReserve(path: "", size: 0, io: PosixFileIO())
}

extension LogEngine {
    /// Rebuilds the index by scanning every segment in order, verifying every record (header CRC and record CRC).
    ///
    /// - A bad region followed by a valid record is corruption: it is skipped, logged and left on disk.
    /// - A bad region at the end of the last segment is a torn tail: a copy goes to `recovery/`, the segment is
    ///   truncated and fsynced. (A bad tail of an earlier segment is logged and left alone.)
    /// - Spill files no live record references, and every `.partial` file, are removed.
    /// Blocking; runs before the writer starts.
    static func recover(_ configuration: EngineConfiguration, logger: Logger) throws -> Recovered {
        let started = nowNanos()
        let io = configuration.fileIO
        let root = configuration.directory
        let segmentsPath = root + "/" + Format.segmentsDirectory
        let blobsPath = root + "/" + Format.blobsDirectory
        let recoveryPath = root + "/" + Format.recoveryDirectory
        for path in [segmentsPath, blobsPath, recoveryPath] { try io.makeDirectory(path) }
        try io.syncDirectory(root)

        var report = RecoveryReport()
        var state = State()
        // The index is built in place; `deleted` holds the sequence of the newest tombstone of each key that is absent,
        // so an older put met later in the scan (compaction moves records forward) cannot bring the key back.
        var deleted: [BlobKey: UInt64] = [:]
        var maxSequence: UInt64 = 0
        var maxSpillID: UInt64 = 0

        let ids = try io.listDirectory(segmentsPath)
            .compactMap { parseHexName($0, suffix: Format.segmentSuffix) }
            .filter { $0 > 0 && $0 <= UInt64(UInt32.max) }
            .map { UInt32($0) }
            .sorted()
        var last: (segment: SegmentFile, end: Int64)?

        for (position, id) in ids.enumerated() {
            let isLast = position == ids.count - 1
            let path = segmentsPath + "/" + SegmentFile.fileName(id: id)
            let fd = try io.open(path, flags: isLast ? O_RDWR : O_RDONLY, mode: 0)
            let segment = SegmentFile(id: id, path: path, fd: fd, io: io)
            let size = try io.fileSize(fd)
            report.segmentsScanned += 1
            var scanner = SegmentScanner(io: io, fd: fd, size: size)
            let header = try scanner.bytes(at: 0, count: Format.segmentHeaderSize)
            guard let header, SegmentFile.validHeader(header, id: id) else {
                if isLast {
                    // A crash while creating the segment: nothing in it was ever acknowledged.
                    try keepCopy(io: io, fd: fd, from: 0, size: size, segmentID: id, recoveryPath: recoveryPath)
                    try io.unlink(path)
                    try io.syncDirectory(segmentsPath)
                    report.bytesCut += size
                    logger.warning(
                        "last segment had no valid header; moved to recovery", metadata: ["segment.id": "\(id)"])
                } else {
                    report.corruptRegions += 1
                    logger.error("segment header is corrupt; segment skipped", metadata: ["segment.id": "\(id)"])
                }
                continue
            }
            var offset = Int64(Format.segmentHeaderSize)
            scan: while offset < scanner.size {
                switch try scanner.record(at: offset) {
                case .valid(let record, let length):
                    report.recordsScanned += 1
                    maxSequence = max(maxSequence, record.sequence)
                    if let spillID = record.meta?.spillID { maxSpillID = max(maxSpillID, spillID) }
                    let key = BlobKey(unchecked: record.key)
                    let newest = state.index[key]?.sequence ?? deleted[key] ?? 0
                    if record.sequence > newest {
                        if var meta = record.meta {
                            meta.contentType = state.contentTypes.intern(meta.contentType)
                            state.index[key] = IndexEntry(
                                sequence: record.sequence, segment: id, offset: offset, length: length, meta: meta)
                            deleted.removeValue(forKey: key)
                        } else {
                            state.index.removeValue(forKey: key)
                            deleted[key] = record.sequence
                        }
                    }
                    offset += Int64(length)
                case .invalid:
                    // A record running past the end of the file is a torn tail with nothing after it.
                    if let next = try scanner.resumeOffset(afterInvalidAt: offset) {
                        report.corruptRegions += 1
                        logger.error(
                            "corrupt region in segment skipped (left on disk)",
                            metadata: ["segment.id": "\(id)", "from": "\(offset)", "to": "\(next)"])
                        offset = next
                    } else if isLast {
                        try keepCopy(
                            io: io, fd: fd, from: offset, size: size, segmentID: id, recoveryPath: recoveryPath)
                        try io.ftruncate(fd, length: offset)
                        try io.fdatasync(fd)
                        report.bytesCut += size - offset
                        logger.warning(
                            "torn tail cut from the last segment (copy kept)",
                            metadata: ["segment.id": "\(id)", "offset": "\(offset)", "bytes": "\(size - offset)"])
                        break scan
                    } else {
                        report.corruptRegions += 1
                        logger.error(
                            "corrupt tail in a sealed segment (left on disk)",
                            metadata: ["segment.id": "\(id)", "from": "\(offset)", "to": "\(size)"])
                        break scan
                    }
                }
            }
            state.segments[id] = segment
            if isLast {
                // A process killed before its fdatasync may have left records that are in the page cache but not on
                // disk. Sync them now, before they are served, so a later power cut cannot take back what a reader
                // has already seen.
                try io.fdatasync(fd)
                last = (segment, offset)
            }
        }

        deleted = [:]
        report.liveBlobs = state.index.count

        // Spill files: keep exactly those the index references.
        var referenced = Set<UInt64>()
        for entry in state.index.values where entry.isSpilled { referenced.insert(entry.spillID) }
        var present = Set<UInt64>()
        for name in try io.listDirectory(blobsPath) {
            if let id = parseHexName(name, suffix: Format.spillSuffix), referenced.contains(id) {
                present.insert(id)
                continue
            }
            if let id = parseHexName(name, suffix: Format.spillSuffix)
                ?? parseHexName(
                    name, suffix: Format.spillPartialSuffix)
            {
                maxSpillID = max(maxSpillID, id)
            }
            try io.unlink(blobsPath + "/" + name)
            report.orphansRemoved += 1
        }
        if report.orphansRemoved > 0 { try io.syncDirectory(blobsPath) }
        for (key, entry) in state.index where entry.isSpilled && !present.contains(entry.spillID) {
            report.missingSpills += 1
            logger.error(
                "spill file of a live blob is missing",
                metadata: ["blob.key": "\(key)", "spill.id": "\(entry.spillID)"])
        }

        let writer: WriterState
        if let last {
            writer = WriterState(active: last.segment, end: last.end, nextSequence: maxSequence + 1)
        } else {
            let id = (ids.last ?? 0) + 1
            let path = segmentsPath + "/" + SegmentFile.fileName(id: id)
            let segment = try createSegment(id: id, path: path, io: io)
            try io.syncDirectory(segmentsPath)
            state.segments[id] = segment
            writer = WriterState(active: segment, end: Int64(Format.segmentHeaderSize), nextSequence: maxSequence + 1)
        }
        state.activeSegment = writer.active.id
        report.milliseconds = (nowNanos() - started) / 1_000_000
        logger.info(
            "recovery done",
            metadata: [
                "segments": "\(report.segmentsScanned)", "records": "\(report.recordsScanned)",
                "blobs": "\(report.liveBlobs)", "bytes.cut": "\(report.bytesCut)",
                "corrupt.regions": "\(report.corruptRegions)", "orphans.removed": "\(report.orphansRemoved)",
                "missing.spills": "\(report.missingSpills)", "ms": "\(report.milliseconds)",
            ])
        return Recovered(state: state, writer: writer, report: report, nextSpillID: maxSpillID + 1)
    }

    /// Copies bytes `from..<size` of a segment to `recovery/<segment>-<offset>-<time>.cut` and fsyncs the copy.
    private static func keepCopy(
        io: any FileIO, fd: CInt, from: Int64, size: Int64, segmentID: UInt32, recoveryPath: String
    ) throws {
        let name = "\(hex16(UInt64(segmentID)))-\(from)-\(nowMillis()).cut"
        let out = try io.open(recoveryPath + "/" + name, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644)
        defer { try? io.close(out) }
        var offset = from
        while offset < size {
            let chunk = try io.read(fd, count: Int(min(8 << 20, size - offset)), offset: offset)
            if chunk.readableBytes == 0 { break }
            try io.writeAll(out, chunk, offset: offset - from)
            offset += Int64(chunk.readableBytes)
        }
        try io.fsync(out)
        try io.syncDirectory(recoveryPath)
    }

    static func nowNanos() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }
}

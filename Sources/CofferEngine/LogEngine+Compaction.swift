import CofferCore
import Logging
import NIOCore

/// What one compaction pass did.
public struct CompactionReport: Sendable, Hashable {
    public var segmentsCompacted = 0
    public var recordsRelocated = 0
    public var bytesRelocated: Int64 = 0
    /// Size of the segment files removed.
    public var bytesReclaimed: Int64 = 0
    /// Segments kept because a live record in them could not be read back (corruption); logged.
    public var segmentsKept = 0

    public init() {}
}

/// How full of garbage one sealed segment is.
struct SegmentUsage: Sendable {
    var id: UInt32
    var fileSize: Int64
    var liveBytes: Int64

    var garbageRatio: Double {
        let payload = fileSize - Int64(Format.segmentHeaderSize)
        guard payload > 0 else { return 0 }
        return 1 - Double(liveBytes) / Double(payload)
    }
}

extension LogEngine {
    /// Rewrites every sealed segment whose garbage ratio is at least `threshold` (0...1): its live records are
    /// appended again through the group commit (keeping their sequence numbers), then the segment file is removed.
    /// Reads and writes go on meanwhile; a reader still holding the old segment keeps reading it until done.
    ///
    /// - Durability: a segment is removed only after every live record in it is durable elsewhere; a crash in between
    ///   leaves two identical copies, which recovery resolves.
    /// - Errors: ``StoreError/insufficientStorage`` or ``StoreError/io`` from the relocating writes; the segment being
    ///   compacted is then left as it was.
    public func compact(threshold: Double) async throws -> CompactionReport {
        var report = CompactionReport()
        // One pass at a time: a second caller (the background compactor, an operator) finds nothing to do.
        guard
            compacting.withLock({ busy in
                defer { busy = true }
                return !busy
            })
        else { return report }
        defer { compacting.withLock { $0 = false } }
        for usage in try await segmentUsage() where usage.garbageRatio >= threshold && usage.fileSize > 0 {
            try await compactSegment(usage, report: &report)
        }
        if report.segmentsCompacted > 0 || report.segmentsKept > 0 {
            logger.info(
                "compaction done",
                metadata: [
                    "segments": "\(report.segmentsCompacted)", "records.relocated": "\(report.recordsRelocated)",
                    "bytes.reclaimed": "\(report.bytesReclaimed)", "segments.kept": "\(report.segmentsKept)",
                ])
        }
        return report
    }

    /// Live bytes per sealed segment (the active one is never compacted).
    func segmentUsage() async throws -> [SegmentUsage] {
        let (segments, live, activeID) = state.withLock { s -> ([SegmentFile], [UInt32: Int64], UInt32) in
            var live: [UInt32: Int64] = [:]
            for entry in s.index.values { live[entry.segment, default: 0] += Int64(entry.recordLength) }
            return (Array(s.segments.values), live, s.activeSegment)
        }
        let io = self.io
        return try await ioPool.runIfActive {
            try segments.filter { $0.id < activeID }.sorted { $0.id < $1.id }.map { segment in
                SegmentUsage(id: segment.id, fileSize: try io.fileSize(segment.fd), liveBytes: live[segment.id] ?? 0)
            }
        }
    }

    private func compactSegment(_ usage: SegmentUsage, report: inout CompactionReport) async throws {
        guard let segment = state.withLock({ $0.segments[usage.id] }) else { return }
        let io = self.io
        let batchBytes = max(configuration.maxBatchBytes / 2, 1 << 20)
        var offset = Int64(Format.segmentHeaderSize)
        var scanner = SegmentScanner(io: io, fd: segment.fd, size: usage.fileSize)
        while offset < usage.fileSize {
            // Gather a batch of live records (verified) on the I/O pool.
            let (batch, next) = try await ioPool.runIfActive { [scanner, offset] in
                var scanner = scanner
                var offset = offset
                var batch: [Relocation] = []
                var bytes = 0
                while offset < usage.fileSize && bytes < batchBytes {
                    switch try scanner.record(at: offset) {
                    case .valid(let record, let length):
                        if self.isLive(record, segment: usage.id, offset: offset),
                            let raw = try scanner.bytes(at: offset, count: length)
                        {
                            batch.append(Relocation(key: record.key, sequence: record.sequence, raw: raw))
                            bytes += length
                        }
                        offset += Int64(length)
                    case .invalid:
                        offset = try scanner.resumeOffset(afterInvalidAt: offset) ?? usage.fileSize
                    }
                }
                return (batch, offset)
            }
            offset = next
            scanner = SegmentScanner(io: io, fd: segment.fd, size: usage.fileSize)
            guard !batch.isEmpty else { continue }
            try await withThrowingTaskGroup(of: Bool.self) { group in
                for relocation in batch {
                    group.addTask {
                        let outcome = try await self.commit(
                            key: BlobKey(unchecked: relocation.key),
                            mutation: .relocate(relocation.raw, sequence: relocation.sequence),
                            condition: .none)
                        return outcome.applied
                    }
                }
                for try await moved in group where moved {
                    report.recordsRelocated += 1
                }
            }
            report.bytesRelocated += Int64(batch.reduce(0) { $0 + $1.raw.readableBytes })
        }
        // Remove the segment only if nothing live points into it any more.
        let stillLive = state.withLock { s in s.index.values.contains { $0.segment == usage.id } }
        if stillLive {
            report.segmentsKept += 1
            logger.error(
                "segment kept after compaction: a live record in it could not be relocated",
                metadata: ["segment.id": "\(usage.id)"])
            return
        }
        state.withLock { _ = $0.segments.removeValue(forKey: usage.id) }
        let path = segment.path
        let segmentsPath = self.segmentsPath
        try await ioPool.runIfActive {
            try io.unlink(path)
            try io.syncDirectory(segmentsPath)
        }
        report.segmentsCompacted += 1
        report.bytesReclaimed += usage.fileSize
        logger.info(
            "segment compacted",
            metadata: ["segment.id": "\(usage.id)", "garbage.ratio": "\(usage.garbageRatio)"])
    }

    /// A put is live when the index points at exactly this record; a tombstone is kept while its key is absent
    /// (an older put of the key may still sit in another segment, and the tombstone must keep hiding it).
    private func isLive(_ record: LogRecord, segment: UInt32, offset: Int64) -> Bool {
        state.withLock { s in
            let entry = s.index[BlobKey(unchecked: record.key)]
            if record.kind == .delete { return entry == nil }
            return entry?.sequence == record.sequence && entry?.segment == segment && entry?.recordOffset == offset
        }
    }
}

/// A verified record to append again, unchanged.
struct Relocation: Sendable {
    var key: String
    var sequence: UInt64
    var raw: ByteBuffer
}

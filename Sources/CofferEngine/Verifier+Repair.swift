import CofferCore
import Logging
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What ``Verifier/repair(logger:)`` did.
public struct RepairReport: Sendable, Hashable, Codable {
    /// The check before anything was changed.
    public var before: VerifyReport
    /// The check after the repair.
    public var after: VerifyReport
    /// Files written under `quarantine/` (the `MANIFEST` lists each).
    public var quarantined: [String] = []
    /// Damaged keys that got a tombstone: they now read as not found.
    public var keysDeleted: [String] = []
    /// Damaged keys that already read as not found (no older version left): nothing to delete.
    public var keysAlreadyAbsent: [String] = []
    /// Bytes the engine's recovery cut when the repair opened the directory (torn tails; copies under `recovery/`).
    public var recoveryBytesCut: Int64 = 0
    /// Spill files the engine's recovery removed (orphans, `.partial` files).
    public var orphansRemoved = 0

    public init(before: VerifyReport, after: VerifyReport) {
        self.before = before
        self.after = after
    }
}

extension Verifier {
    /// Checks the directory and, if anything is damaged, quarantines it and makes every damaged key read as not found
    /// instead of failing or serving an older version:
    ///
    /// 1. With the lock held: every damaged segment range (a corrupt region, a corrupt tail, a damaged segment header)
    ///    is copied to `quarantine/<segment>-<offset>-<ms>.region`; the spill file of every damaged blob, and any
    ///    spill file a damaged put-spill record names, to `quarantine/<spill>-<ms>.blob`; each copy is fsynced and
    ///    listed in `quarantine/MANIFEST` (fsynced, with the directory). Torn tails are left to recovery, which
    ///    keeps its own copy under `recovery/`.
    /// 2. The directory is opened with a ``LogEngine`` (compaction off). Its recovery runs as at any start: it cuts a
    ///    torn tail and removes orphan spill files.
    /// 3. Each damaged key is deleted through the engine's normal write path: a tombstone is appended and fsynced,
    ///    and a damaged spill file it replaces is removed (its copy is in quarantine). A key with nothing left to
    ///    delete already reads as not found.
    /// 4. The engine is closed and the directory checked again: quarantined ranges count as handled.
    ///
    /// Damaged bytes inside segments are never rewritten or cut: they stay where they are, listed in the manifest.
    /// Blocking work runs on the caller's thread and the engine's threads.
    ///
    /// Durability: every quarantine copy and the manifest are fsynced before the engine opens; every tombstone is
    /// fsynced before the engine closes.
    /// Errors: those of ``verify()``; ``StoreError`` or `IOError` from the engine. A failure after the copies leaves
    /// them (and the manifest) in place; running the repair again is safe.
    public func repair(logger: Logger) async throws -> RepairReport {
        let before: VerifyReport
        var quarantined: [String] = []
        do {
            let lock = try DirectoryLock(directory: directory)
            defer { lock.release() }
            before = try scan()
            guard before.status != .clean else { return RepairReport(before: before, after: before) }
            quarantined = try quarantine(before)
        }
        var configuration = EngineConfiguration(directory: directory)
        configuration.compactionInterval = nil
        configuration.fileIO = io
        let engine = try await LogEngine.open(configuration, logger: logger)
        var deleted: [String] = []
        var absent: [String] = []
        do {
            for damaged in before.damagedBlobs {
                guard let key = BlobKey(damaged.key) else { continue }
                do {
                    _ = try await engine.delete(key, condition: .none)
                    deleted.append(damaged.key)
                    logger.warning("damaged blob deleted", metadata: ["blob.key": "\(damaged.key)"])
                } catch let error as StoreError where error == .notFound {
                    absent.append(damaged.key)
                }
            }
        } catch {
            try? await engine.close()
            throw error
        }
        let recovery = engine.recovery
        try await engine.close()
        var report = RepairReport(before: before, after: try verify())
        report.quarantined = quarantined
        report.keysDeleted = deleted
        report.keysAlreadyAbsent = absent
        report.recoveryBytesCut = recovery.bytesCut
        report.orphansRemoved = recovery.orphansRemoved
        return report
    }

    /// Step 1 of ``repair(logger:)``: copies every damaged range and spill file into `quarantine/` and lists them
    /// in the manifest. Returns the names written. Blocking.
    private func quarantine(_ report: VerifyReport) throws -> [String] {
        let stamp = LogEngine.nowMillis()
        var names: [String] = []
        var lines: [String] = []
        let created = !((try? io.listDirectory(directory))?.contains(Self.quarantineDirectory) ?? false)
        try io.makeDirectory(quarantinePath)
        if created { try io.syncDirectory(directory) }

        for region in report.regions where !region.quarantined && region.kind != .tornTail {
            let name = "\(hex16(UInt64(region.segment)))-\(region.offset)-\(stamp).region"
            let crc = try quarantineCopy(
                from: segmentsPath + "/" + SegmentFile.fileName(id: region.segment), offset: region.offset,
                count: region.length, to: name)
            names.append(name)
            lines.append(
                QuarantineManifest.line(
                    kind: "region", id: UInt64(region.segment), offset: region.offset, length: region.length,
                    crc: crc, file: name, keys: Array(Set(region.records.compactMap(\.key))).sorted()))
        }
        // Spill files: those of damaged blobs, and those damaged put-spill records name (recovery would remove them
        // as orphans, although their bytes may be intact).
        var spills: [UInt64: Set<String>] = [:]
        for blob in report.damagedBlobs {
            if let id = blob.spillID { spills[id, default: []].insert(blob.key) }
        }
        for region in report.regions where !region.quarantined && region.kind != .tornTail {
            for record in region.records {
                if let id = record.spillID { spills[id, default: []].insert(record.key ?? "") }
            }
        }
        let present = Set(try listIfPresent(blobsPath))
        for (id, keys) in spills.sorted(by: { $0.key < $1.key }) {
            let keys = keys.filter { !$0.isEmpty }.sorted()
            let source = hex16(id) + Format.spillSuffix
            guard present.contains(source) else {
                lines.append(
                    QuarantineManifest.line(
                        kind: "missing-spill", id: id, offset: 0, length: 0, crc: nil, file: nil, keys: keys))
                continue
            }
            let name = "\(hex16(id))-\(stamp).blob"
            let crc = try quarantineCopy(from: blobsPath + "/" + source, offset: 0, count: nil, to: name)
            let length = try Self.size(of: quarantinePath + "/" + name, io: io)
            names.append(name)
            lines.append(
                QuarantineManifest.line(
                    kind: "spill", id: id, offset: 0, length: length, crc: crc, file: name, keys: keys))
        }
        if !lines.isEmpty { try appendToManifest(lines) }
        return names
    }

    private static func size(of path: String, io: any FileIO) throws -> Int64 {
        let fd = try io.open(path, flags: O_RDONLY, mode: 0)
        defer { try? io.close(fd) }
        return try io.fileSize(fd)
    }
}

import CofferCore
import CofferEngine
import CofferTestKit
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// How ``FaultInjectingFileIO/applyPowerLoss(seed:options:)`` decides what a power cut left on disk.
public struct PowerLossOptions: Sendable, Hashable {
    /// Keep a random prefix of each file's unsynced writes (in the order they were made); otherwise drop them all.
    public var keepUnsyncedPrefix = true
    /// Sometimes fill the rest of the write the kept prefix ends in with zeros instead of leaving it out, as a file
    /// system does whose size update reached the disk before the data.
    public var zeroFillTornWrite = true
    /// Lose, at random, each directory change made since the directory's last fsync: a lost creation removes the
    /// file, a lost rename puts the file back under its old name, a lost unlink brings the file back.
    public var loseUnsyncedDirectoryEntries = true

    public init() {}
}

/// What ``FaultInjectingFileIO/applyPowerLoss(seed:options:)`` did.
public struct PowerLossReport: Sendable, Hashable {
    /// Files that had writes or truncations since their last sync.
    public var filesWithUnsyncedData = 0
    /// Bytes written since the last sync of their file.
    public var unsyncedBytes: Int64 = 0
    /// Of those, the bytes kept.
    public var keptBytes: Int64 = 0
    /// Writes cut in the middle (their kept part may be followed by zeros).
    public var tornWrites = 0
    /// Directory entries created or renamed since their directory's last fsync.
    public var unsyncedEntries = 0
    /// Of those, the entries lost.
    public var lostEntries = 0
    /// Names unlinked since their directory's last fsync.
    public var unsyncedUnlinks = 0
    /// Of those, the names brought back (with the file's content as of its last sync, plus a prefix of the rest).
    public var unlinksUndone = 0

    public init() {}
}

extension FaultInjectingFileIO {
    /// Cuts the power: from now on every call through the seam fails with `EIO`, so nothing more becomes durable.
    /// A sync still running returns `EIO` too, and counts as not done. Idempotent.
    public func cutPower() {
        state.withLock { $0.power.isCut = true }
    }

    /// Whether the power is cut.
    public var isPowerCut: Bool { state.withLock { $0.power.isCut } }

    /// Ends a cut without a power loss: only the process died (kill -9), the machine kept running, so the page cache
    /// keeps every write, synced or not. Calls work again (a new engine can open through this seam), and what was
    /// unsynced stays unsynced: a later cut can still lose it.
    public func resumeAfterProcessCrash() {
        state.withLock { $0.power.isCut = false }
    }

    /// Rewrites the files on disk to one state a power cut at the moment of ``cutPower()`` could have left: each data
    /// file goes back to its content at its last successful sync (overwritten ranges restored, truncated bytes put
    /// back), then gets a random prefix of the writes made since; directory entries not yet made durable may be lost.
    /// Files and names the seam never saw change are taken as durable. Call it after
    /// the power is cut and the engine closed; the seam then forgets what it tracked (and stays cut).
    ///
    /// Durability: this is a test tool; it does not sync what it writes (the page cache is the "disk" afterwards).
    /// Errors: ``StoreError/io`` if the seam does not track power loss or the power was not cut; `IOError` from the
    /// file system.
    public func applyPowerLoss(seed: UInt64, options: PowerLossOptions = PowerLossOptions()) throws -> PowerLossReport {
        try state.withLock { s in
            guard tracksPowerLoss else { throw StoreError.io.with(message: "the seam does not track power loss") }
            guard s.power.isCut else { throw StoreError.io.with(message: "applyPowerLoss needs cutPower() first") }
            var random = SplitMix64(seed: seed)
            var report = PowerLossReport()
            let files = s.power.files.values.sorted { $0.path < $1.path }
            for file in files where !file.ops.isEmpty {
                try Self.restore(file, options: options, random: &random, report: &report)
            }
            if options.loseUnsyncedDirectoryEntries {
                for file in files where !file.unlinked && file.durableName != file.path {
                    report.unsyncedEntries += 1
                    guard random.next() & 1 == 0 else { continue }
                    report.lostEntries += 1
                    if let old = file.durableName {
                        guard Glibc.rename(file.path, old) == 0 else {
                            throw IOError(errnoCode: errno, reason: "rename")
                        }
                    } else {
                        guard Glibc.unlink(file.path) == 0 else { throw IOError(errnoCode: errno, reason: "unlink") }
                    }
                }
            } else {
                report.unsyncedEntries = files.filter { !$0.unlinked && $0.durableName != $0.path }.count
            }
            for file in files where file.unlinked {
                report.unsyncedUnlinks += 1
                var info = stat()
                let target = file.durableName ?? file.path
                let undo = options.loseUnsyncedDirectoryEntries && random.next() & 1 == 0 && stat(target, &info) != 0
                if undo {
                    report.unlinksUndone += 1
                    guard Glibc.rename(file.path, target) == 0 else {
                        throw IOError(errnoCode: errno, reason: "rename")
                    }
                } else {
                    guard Glibc.unlink(file.path) == 0 else { throw IOError(errnoCode: errno, reason: "unlink") }
                }
            }
            s.power.files = [:]
            s.power.byPath = [:]
            return report
        }
    }

    /// Undoes every unsynced change of `file`, newest first, then replays a random prefix of them.
    private static func restore(
        _ file: PowerModel.TrackedFile, options: PowerLossOptions, random: inout SplitMix64,
        report: inout PowerLossReport
    ) throws {
        let fd = Glibc.open(file.path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw IOError(errnoCode: errno, reason: "open \(file.path)") }
        defer { Glibc.close(fd) }
        let io = PosixFileIO()
        report.filesWithUnsyncedData += 1
        for op in file.ops.reversed() {
            switch op {
            case .write(let offset, _, let sizeBefore, let overwritten):
                try overwritten.withUnsafeBytes { try io.writeAll(fd, $0, offset: offset) }
                try io.ftruncate(fd, length: sizeBefore)
            case .truncate(let length, let sizeBefore, let removed):
                try io.ftruncate(fd, length: sizeBefore)
                try removed.withUnsafeBytes { try io.writeAll(fd, $0, offset: length) }
            }
        }
        let total = file.ops.reduce(Int64(0)) { sum, op in
            if case .write(_, let bytes, _, _) = op { return sum + Int64(bytes.count) }
            return sum
        }
        report.unsyncedBytes += total
        guard options.keepUnsyncedPrefix else { return }
        // Favour the extremes (nothing kept, everything kept) as well as cuts in between.
        var budget: Int64
        switch random.next() % 4 {
        case 0: budget = 0
        case 1: budget = total
        default: budget = total == 0 ? 0 : Int64(random.next() % UInt64(total + 1))
        }
        report.keptBytes += budget
        for op in file.ops {
            switch op {
            case .truncate(let length, _, _):
                try io.ftruncate(fd, length: length)
            case .write(let offset, let bytes, _, _):
                if Int64(bytes.count) <= budget {
                    try bytes.withUnsafeBytes { try io.writeAll(fd, $0, offset: offset) }
                    budget -= Int64(bytes.count)
                    continue
                }
                let kept = Int(budget)
                try bytes.withUnsafeBytes { raw in
                    try io.writeAll(fd, UnsafeRawBufferPointer(rebasing: raw[0..<kept]), offset: offset)
                }
                if options.zeroFillTornWrite && random.next() & 1 == 0 {
                    let zeros = [UInt8](repeating: 0, count: bytes.count - kept)
                    try zeros.withUnsafeBytes { try io.writeAll(fd, $0, offset: offset + Int64(kept)) }
                }
                report.tornWrites += 1
                return
            }
        }
    }
}

import CofferCore
import CofferEngineTesting
import NIOCore
import Synchronization
import Testing

@testable import CofferEngine

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The power-loss model itself: what ``FaultInjectingFileIO/applyPowerLoss(seed:options:)`` leaves on disk, and two
/// negative controls showing the crash-loop test catches an engine that skips a sync.
@Suite("Power loss: the model")
struct PowerLossModelTests {
    private static let create = O_RDWR | O_CREAT | O_EXCL

    private static func write(_ io: FaultInjectingFileIO, _ fd: CInt, _ bytes: [UInt8], at offset: Int64) throws {
        try bytes.withUnsafeBytes { try io.writeAll(fd, $0, offset: offset) }
    }

    @Test("synced bytes always stay; unsynced appends are dropped, or kept as a prefix (its torn write maybe zeroed)")
    func appends() async throws {
        try await withTestDirectory { directory async throws in
            let synced = [UInt8](repeating: 0xA1, count: 100)
            let unsynced = randomBytes(60, seed: 1) + randomBytes(40, seed: 2)
            var lengths = Set<Int>()
            var zeroed = false
            for seed in 0..<64 {
                try FileIODirectories.make(directory.segments)
                let path = directory.segment(UInt32(seed + 1))
                let io = FaultInjectingFileIO(tracksPowerLoss: true)
                let fd = try io.open(path, flags: Self.create, mode: 0o644)
                try io.syncDirectory(directory.segments)
                try Self.write(io, fd, synced, at: 0)
                try io.fdatasync(fd)
                try Self.write(io, fd, Array(unsynced[0..<60]), at: 100)
                try Self.write(io, fd, Array(unsynced[60...]), at: 160)
                io.cutPower()
                #expect(throws: IOError.self) { try io.close(fd) }
                var options = PowerLossOptions()
                options.keepUnsyncedPrefix = seed != 0
                let report = try io.applyPowerLoss(seed: UInt64(seed), options: options)
                #expect(report.unsyncedBytes == 100)
                let after = try Files.read(path)
                #expect(Array(after.prefix(100)) == synced, "seed \(seed)")
                let tail = Array(after.dropFirst(100))
                let kept = zip(tail, unsynced).prefix { $0 == $1 }.count
                // Whatever follows the kept prefix is zeros up to the end of the write it tore, never other bytes.
                #expect(tail[kept...].allSatisfy { $0 == 0 }, "seed \(seed)")
                #expect([0, 60, 100].contains(tail.count) || tail.count == kept, "seed \(seed)")
                if tail.count > kept { zeroed = true }
                if seed == 0 { #expect(tail.isEmpty) }
                lengths.insert(kept)
            }
            #expect(lengths.contains(0) && lengths.contains(100) && lengths.count > 5)
            #expect(zeroed)
        }
    }

    @Test("overwrites and truncations since the last sync are undone byte for byte")
    func overwritesAndTruncations() async throws {
        try await withTestDirectory { directory async throws in
            try FileIODirectories.make(directory.blobs)
            let original = randomBytes(300, seed: 3)
            for seed in 0..<16 {
                let path = directory.blobs + "/\(seed).blob"
                let io = FaultInjectingFileIO(tracksPowerLoss: true)
                let fd = try io.open(path, flags: Self.create, mode: 0o644)
                try io.syncDirectory(directory.blobs)
                try Self.write(io, fd, original, at: 0)
                try io.fsync(fd)
                try Self.write(io, fd, [1, 2, 3, 4], at: 0)  // an overwritten header
                try io.ftruncate(fd, length: 120)  // a rolled-back batch
                try Self.write(io, fd, randomBytes(500, seed: 4), at: 120)
                try io.ftruncate(fd, length: 50)
                io.cutPower()
                var options = PowerLossOptions()
                options.keepUnsyncedPrefix = false
                _ = try io.applyPowerLoss(seed: UInt64(seed), options: options)
                #expect(try Files.read(path) == original, "seed \(seed)")
                try? io.close(fd)
            }
        }
    }

    @Test("names created or renamed since their directory's last fsync may be lost; fsynced names always stay")
    func directoryEntries() async throws {
        var outcomes = Set<String>()
        for seed in 0..<32 {
            try await withTestDirectory { directory async throws in
                try FileIODirectories.make(directory.blobs)
                let io = FaultInjectingFileIO(tracksPowerLoss: true)
                // "a": created, synced, renamed; the directory never fsynced after. "c": created and fsynced in the
                // directory, then renamed. "b": created and the directory fsynced.
                let c = try io.open(directory.blobs + "/c.partial", flags: Self.create, mode: 0o644)
                try io.syncDirectory(directory.blobs)
                try io.close(c)
                let b = try io.open(directory.blobs + "/b.blob", flags: Self.create, mode: 0o644)
                try Self.write(io, b, [7], at: 0)
                try io.fdatasync(b)
                try io.close(b)
                try io.syncDirectory(directory.blobs)
                try io.rename(directory.blobs + "/c.partial", to: directory.blobs + "/c.blob")
                let a = try io.open(directory.blobs + "/a.partial", flags: Self.create, mode: 0o644)
                try Self.write(io, a, [9, 9], at: 0)
                try io.fdatasync(a)
                try io.close(a)
                try io.rename(directory.blobs + "/a.partial", to: directory.blobs + "/a.blob")
                io.cutPower()
                let report = try io.applyPowerLoss(seed: UInt64(seed))
                #expect(report.unsyncedEntries == 2)
                let names = Files.list(directory.blobs)
                #expect(names.contains("b.blob"))
                #expect(try Files.read(directory.blobs + "/b.blob") == [7])
                #expect(names.contains("c.blob") != names.contains("c.partial"), "exactly one name of c")
                #expect(!names.contains("a.partial"))
                if names.contains("a.blob") { #expect(try Files.read(directory.blobs + "/a.blob") == [9, 9]) }
                outcomes.insert(names.joined(separator: ","))
            }
        }
        #expect(outcomes.count == 4, "every combination of the two unsynced entries occurs: \(outcomes)")
    }

    @Test("an unlink not yet made durable by a directory fsync may be undone; a durable one never is")
    func unlinks() async throws {
        var undone = 0
        for seed in 0..<16 {
            try await withTestDirectory { directory async throws in
                try FileIODirectories.make(directory.blobs)
                let io = FaultInjectingFileIO(tracksPowerLoss: true)
                for name in ["gone.blob", "back.blob"] {
                    let fd = try io.open(directory.blobs + "/" + name, flags: Self.create, mode: 0o644)
                    try Self.write(io, fd, Array(name.utf8), at: 0)
                    try io.fdatasync(fd)
                    try io.close(fd)
                }
                try io.syncDirectory(directory.blobs)
                try io.unlink(directory.blobs + "/gone.blob")
                try io.syncDirectory(directory.blobs)
                try io.unlink(directory.blobs + "/back.blob")
                #expect(try io.listDirectory(directory.blobs).isEmpty, "the seam hides what it keeps")
                io.cutPower()
                let report = try io.applyPowerLoss(seed: UInt64(seed))
                #expect(report.unsyncedUnlinks == 1)
                let names = Files.list(directory.blobs)
                #expect(names == (report.unlinksUndone == 1 ? ["back.blob"] : []), "seed \(seed)")
                if report.unlinksUndone == 1 {
                    undone += 1
                    #expect(try Files.read(directory.blobs + "/back.blob") == Array("back.blob".utf8))
                }
            }
        }
        #expect(undone > 0 && undone < 16)
    }

    @Test("the call budget cuts the power on the call that spends it; every call after fails with EIO")
    func callBudget() async throws {
        try await withTestDirectory { directory async throws in
            try FileIODirectories.make(directory.segments)
            let io = FaultInjectingFileIO(tracksPowerLoss: true)
            io.update { $0.callsUntilPowerCut = 3 }
            let fd = try io.open(directory.segment(1), flags: Self.create, mode: 0o644)
            try Self.write(io, fd, [1], at: 0)
            #expect(!io.isPowerCut)
            #expect(throws: IOError.self) { try io.fdatasync(fd) }
            #expect(io.isPowerCut)
            #expect(throws: IOError.self) { try Self.write(io, fd, [2], at: 1) }
            #expect(throws: IOError.self) { try io.listDirectory(directory.segments) }
            #expect(throws: IOError.self) { try io.close(fd) }
            _ = try io.applyPowerLoss(seed: 1)
            #expect(try Files.read(directory.segment(1)).count <= 1)
        }
    }

    @Test("negative control: an engine whose segment fdatasyncs never reach the disk loses acknowledged writes")
    func droppedSegmentSyncsAreCaught() async throws {
        try await withTestDirectory { directory async throws in
            let violations = try await Self.runBroken(directory) { DroppingSyncFileIO(base: $0, drop: .segmentData) }
            #expect(!violations.isEmpty)
        }
    }

    @Test("negative control: an engine that never fsyncs the blobs directory loses acknowledged spilled writes")
    func droppedDirectorySyncsAreCaught() async throws {
        try await withTestDirectory { directory async throws in
            let violations = try await Self.runBroken(directory) { DroppingSyncFileIO(base: $0, drop: .blobsDirectory) }
            #expect(violations.contains { $0.contains("failed to read") || $0.contains("expected") })
        }
    }

    /// Runs crash-loop cycles through `wrap` until one reports a violation (at most 12).
    private static func runBroken(
        _ directory: TestDirectory, wrap: @escaping (FaultInjectingFileIO) -> any FileIO
    ) async throws -> [String] {
        var histories: [String: KeyHistory] = [:]
        for w in 0..<PowerLossTests.writers {
            for k in 0..<PowerLossTests.keysPerWriter { histories["p/w\(w)/k\(k)"] = KeyHistory(acknowledged: nil) }
        }
        var counts = PowerLossCounts()
        for seed in 0..<12 {
            let violations = try await PowerLossTests.cycle(
                directory, seed: UInt64(7000 + seed), histories: &histories, counts: &counts, wrap: wrap)
            if !violations.isEmpty { return violations }
        }
        return []
    }
}

/// `mkdir -p` for tests.
enum FileIODirectories {
    static func make(_ path: String) throws {
        try LogEngine.makeDirectories(path, io: PosixFileIO())
    }
}

/// A layer between an engine and the seam that pretends some syncs happened: the broken engine of the negative
/// controls.
final class DroppingSyncFileIO: FileIO {
    enum Drop { case segmentData, blobsDirectory }

    private let base: any FileIO
    private let drop: Drop
    private let paths = Mutex<[CInt: String]>([:])

    init(base: any FileIO, drop: Drop) {
        self.base = base
        self.drop = drop
    }

    private func dropped(_ fd: CInt) -> Bool {
        drop == .segmentData && (paths.withLock { $0[fd] }?.hasSuffix(Format.segmentSuffix) ?? false)
    }

    func open(_ path: String, flags: CInt, mode: mode_t) throws -> CInt {
        let fd = try base.open(path, flags: flags, mode: mode)
        paths.withLock { $0[fd] = path }
        return fd
    }
    func close(_ fd: CInt) throws {
        paths.withLock { _ = $0.removeValue(forKey: fd) }
        try base.close(fd)
    }
    func fdatasync(_ fd: CInt) throws { if !dropped(fd) { try base.fdatasync(fd) } }
    func fsync(_ fd: CInt) throws { if !dropped(fd) { try base.fsync(fd) } }
    func syncDirectory(_ path: String) throws {
        if drop == .blobsDirectory && path.hasSuffix("/" + Format.blobsDirectory) { return }
        try base.syncDirectory(path)
    }
    func pwrite(_ fd: CInt, _ bytes: UnsafeRawBufferPointer, offset: Int64) throws -> Int {
        try base.pwrite(fd, bytes, offset: offset)
    }
    func pread(_ fd: CInt, into bytes: UnsafeMutableRawBufferPointer, offset: Int64) throws -> Int {
        try base.pread(fd, into: bytes, offset: offset)
    }
    func ftruncate(_ fd: CInt, length: Int64) throws { try base.ftruncate(fd, length: length) }
    func fileSize(_ fd: CInt) throws -> Int64 { try base.fileSize(fd) }
    func unlink(_ path: String) throws { try base.unlink(path) }
    func rename(_ from: String, to: String) throws { try base.rename(from, to: to) }
    func makeDirectory(_ path: String) throws { try base.makeDirectory(path) }
    func listDirectory(_ path: String) throws -> [String] { try base.listDirectory(path) }
}

import CofferEngine
import CofferTestKit
import NIOCore
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A ``FileIO`` that forwards to the real file system but can be told to fail: the seam the durability tests use for
/// short writes, failing fsyncs, a full disk, read errors and power loss. Thread-safe; rules apply to files whose path
/// contains ``Rules/pathFilter`` (all files when empty).
///
/// Power loss (with `tracksPowerLoss`): the seam remembers, for every data file (under `segments/`, `blobs/` or
/// `recovery/`), the writes and truncations made since that file's last successful `fsync`/`fdatasync`, and which
/// names were created, renamed or unlinked since their directory's last `fsync`. ``cutPower()`` (or ``Rules/callsUntilPowerCut``) makes every later call fail
/// with `EIO`, so the engine can make nothing more durable; once the engine is closed,
/// ``applyPowerLoss(seed:options:)`` rewrites the files on disk to one state a real power cut could have left.
public final class FaultInjectingFileIO: FileIO {
    /// What to break. Counters count down as calls happen.
    public struct Rules: Sendable {
        /// Only files whose path contains this are affected ("" = all). A directory sync is affected when the
        /// directory's path followed by "/" contains it (so "/blobs/" selects the blobs directory and its files).
        public var pathFilter = ""
        /// The next this-many fsync/fdatasync calls on files fail with EIO.
        public var failingSyncs = 0
        /// The next this-many directory syncs (``FileIO/syncDirectory(_:)``) fail with EIO.
        public var failingDirectorySyncs = 0
        /// pwrite writes at most this many bytes per call (short writes).
        public var maxBytesPerWrite: Int?
        /// After this many more bytes are written, every pwrite fails with ENOSPC.
        public var bytesUntilFull: Int64?
        /// The next this-many pread calls fail with EIO (after ``readsBeforeFailure`` succeeded).
        public var failingReads = 0
        /// How many affected pread calls succeed before ``failingReads`` start failing.
        public var readsBeforeFailure = 0
        /// The power is cut (see ``FaultInjectingFileIO/cutPower()``) on the call that brings this to zero; that
        /// call fails. Every call through the seam counts, whatever the path filter.
        public var callsUntilPowerCut: Int?
        /// Every affected fsync/fdatasync takes at least this long (a slow disk). The calling thread sleeps: the
        /// engine makes these calls on its own threads only.
        public var syncDelay: Duration = .zero

        public init() {}
    }

    struct State {
        var rules: Rules
        var paths: [CInt: String] = [:]
        var syncs = 0
        var power = PowerModel()
    }

    let base: any FileIO
    let state: Mutex<State>

    /// Whether the seam keeps what the power-loss model needs (undo data of every unsynced change, unlinked files
    /// under hidden names until their directory is fsynced).
    public let tracksPowerLoss: Bool

    /// `tracksPowerLoss` turns the power-loss model on (``applyPowerLoss(seed:options:)`` needs it); without it the
    /// seam adds no bookkeeping, and ``cutPower()`` only makes every call fail.
    public init(base: any FileIO = PosixFileIO(), rules: Rules = Rules(), tracksPowerLoss: Bool = false) {
        self.base = base
        self.state = Mutex(State(rules: rules))
        self.tracksPowerLoss = tracksPowerLoss
    }

    /// Whether the power-loss model follows `path`.
    private func modelled(_ path: String) -> Bool {
        tracksPowerLoss && PowerModel.tracks(path)
    }

    /// Replaces the rules.
    public func update(_ body: (inout Rules) -> Void) {
        state.withLock { body(&$0.rules) }
    }

    /// How many fsync/fdatasync calls succeeded so far.
    public var successfulSyncs: Int { state.withLock { $0.syncs } }

    private func affected(_ fd: CInt, _ rules: Rules, _ paths: [CInt: String]) -> Bool {
        rules.pathFilter.isEmpty || (paths[fd]?.contains(rules.pathFilter) ?? false)
    }

    /// Counts a call towards ``Rules/callsUntilPowerCut`` and fails it once the power is cut. Call with the lock held.
    static func enter(_ s: inout State, _ call: String) throws {
        if let left = s.rules.callsUntilPowerCut {
            s.rules.callsUntilPowerCut = left - 1
            if left <= 1 {
                s.rules.callsUntilPowerCut = nil
                s.power.isCut = true
            }
        }
        if s.power.isCut { throw IOError(errnoCode: EIO, reason: "\(call) (power cut)") }
    }

    public func open(_ path: String, flags: CInt, mode: mode_t) throws -> CInt {
        try state.withLock { s in
            try Self.enter(&s, "open")
            let tracked = modelled(path)
            var existing: stat?
            if tracked {
                var info = stat()
                if stat(path, &info) == 0 { existing = info }
            }
            // O_TRUNC on a file with bytes is a truncation the model must be able to undo.
            var removed: [UInt8] = []
            if tracked, flags & O_TRUNC != 0, let existing, existing.st_size > 0 {
                removed = try PowerModel.readWhole(path)
            }
            let fd = try base.open(path, flags: flags, mode: mode)
            s.paths[fd] = path
            if tracked {
                if existing == nil && flags & O_CREAT != 0 {
                    s.power.created(path)
                } else if !removed.isEmpty {
                    s.power.record(path, .truncate(length: 0, sizeBefore: Int64(removed.count), removed: removed))
                }
            }
            return fd
        }
    }

    public func close(_ fd: CInt) throws {
        let cut = state.withLock { s in
            _ = s.paths.removeValue(forKey: fd)
            return s.power.isCut
        }
        // The descriptor is released even after a power cut, so a closed engine leaks nothing.
        try base.close(fd)
        if cut { throw IOError(errnoCode: EIO, reason: "close (power cut)") }
    }

    public func pwrite(_ fd: CInt, _ bytes: UnsafeRawBufferPointer, offset: Int64) throws -> Int {
        // Held across the write, so the power model sees every write whole and in order.
        try state.withLock { s in
            try Self.enter(&s, "pwrite")
            var allowed = bytes.count
            if affected(fd, s.rules, s.paths) {
                if let cap = s.rules.maxBytesPerWrite { allowed = min(allowed, max(1, cap)) }
                if let left = s.rules.bytesUntilFull {
                    if left <= 0 { throw IOError(errnoCode: ENOSPC, reason: "pwrite (injected)") }
                    allowed = min(allowed, Int(left))
                    s.rules.bytesUntilFull = left - Int64(allowed)
                }
            }
            let chunk = UnsafeRawBufferPointer(rebasing: bytes[0..<allowed])
            guard let path = s.paths[fd], modelled(path) else {
                return try base.pwrite(fd, chunk, offset: offset)
            }
            let sizeBefore = try base.fileSize(fd)
            let overlap = max(0, min(offset + Int64(allowed), sizeBefore) - offset)
            let overwritten = overlap > 0 ? try PowerModel.read(path, count: Int(overlap), offset: offset) : []
            let written = try base.pwrite(fd, chunk, offset: offset)
            if written > 0 {
                s.power.record(
                    path,
                    .write(
                        offset: offset, bytes: Array(chunk[0..<written]), sizeBefore: sizeBefore,
                        overwritten: Array(overwritten.prefix(written))))
            }
            return written
        }
    }

    public func pread(_ fd: CInt, into bytes: UnsafeMutableRawBufferPointer, offset: Int64) throws -> Int {
        try state.withLock { s in
            try Self.enter(&s, "pread")
            guard affected(fd, s.rules, s.paths), s.rules.failingReads > 0 else { return }
            if s.rules.readsBeforeFailure > 0 {
                s.rules.readsBeforeFailure -= 1
                return
            }
            s.rules.failingReads -= 1
            throw IOError(errnoCode: EIO, reason: "pread (injected)")
        }
        let n = try base.pread(fd, into: bytes, offset: offset)
        // Bytes read while the power model rewrote the file are not to be trusted.
        if state.withLock({ $0.power.isCut }) { throw IOError(errnoCode: EIO, reason: "pread (power cut)") }
        return n
    }

    private func sync(_ fd: CInt, _ call: () throws -> Void) throws {
        let (mark, delay): (UInt64, Duration) = try state.withLock { s in
            try Self.enter(&s, "fsync")
            let affected = affected(fd, s.rules, s.paths)
            if affected && s.rules.failingSyncs > 0 {
                s.rules.failingSyncs -= 1
                throw IOError(errnoCode: EIO, reason: "fsync (injected)")
            }
            return (s.power.clock, affected ? s.rules.syncDelay : .zero)
        }
        if delay > .zero {
            let (seconds, attoseconds) = delay.components
            var time = timespec(tv_sec: Int(seconds), tv_nsec: Int(attoseconds / 1_000_000_000))
            var left = timespec()
            while nanosleep(&time, &left) != 0 && errno == EINTR { time = left }
        }
        try call()
        try state.withLock { s in
            // A sync still running when the power went is not a sync.
            if s.power.isCut { throw IOError(errnoCode: EIO, reason: "fsync (power cut)") }
            s.syncs += 1
            if let path = s.paths[fd] { s.power.synced(path, upTo: mark) }
        }
    }

    public func fdatasync(_ fd: CInt) throws { try sync(fd) { try base.fdatasync(fd) } }
    public func fsync(_ fd: CInt) throws { try sync(fd) { try base.fsync(fd) } }

    public func ftruncate(_ fd: CInt, length: Int64) throws {
        try state.withLock { s in
            try Self.enter(&s, "ftruncate")
            guard let path = s.paths[fd], modelled(path) else {
                return try base.ftruncate(fd, length: length)
            }
            let sizeBefore = try base.fileSize(fd)
            let removed =
                sizeBefore > length ? try PowerModel.read(path, count: Int(sizeBefore - length), offset: length) : []
            try base.ftruncate(fd, length: length)
            s.power.record(path, .truncate(length: length, sizeBefore: sizeBefore, removed: removed))
        }
    }

    public func fileSize(_ fd: CInt) throws -> Int64 {
        try state.withLock { try Self.enter(&$0, "fstat") }
        return try base.fileSize(fd)
    }

    public func unlink(_ path: String) throws {
        try state.withLock { s in
            try Self.enter(&s, "unlink")
            guard modelled(path) else { return try base.unlink(path) }
            // A durable name that goes away can come back after a power cut: keep the inode under a hidden name.
            let stash = s.power.stash(for: path)
            if let stash, link(path, stash) != 0 { throw IOError(errnoCode: errno, reason: "link (power model)") }
            do {
                try base.unlink(path)
            } catch {
                if let stash { Glibc.unlink(stash) }
                throw error
            }
            s.power.unlinked(path, stash: stash)
            for (fd, name) in s.paths where name == path { s.paths[fd] = stash ?? name }
        }
    }

    public func rename(_ from: String, to: String) throws {
        try state.withLock { s in
            try Self.enter(&s, "rename")
            try base.rename(from, to: to)
            for (fd, path) in s.paths where path == from { s.paths[fd] = to }
            if modelled(from) || modelled(to) { s.power.renamed(from, to: to) }
        }
    }

    public func makeDirectory(_ path: String) throws {
        try state.withLock { try Self.enter(&$0, "mkdir") }
        try base.makeDirectory(path)
    }

    public func listDirectory(_ path: String) throws -> [String] {
        try state.withLock { try Self.enter(&$0, "readdir") }
        return try base.listDirectory(path).filter { !$0.hasPrefix(PowerModel.stashPrefix) }
    }

    public func syncDirectory(_ path: String) throws {
        let snapshot: [PowerModel.Entry] = try state.withLock { s in
            try Self.enter(&s, "fsync directory")
            if s.rules.failingDirectorySyncs > 0
                && (s.rules.pathFilter.isEmpty || (path + "/").contains(s.rules.pathFilter))
            {
                s.rules.failingDirectorySyncs -= 1
                throw IOError(errnoCode: EIO, reason: "fsync directory (injected)")
            }
            return s.power.entries(in: path)
        }
        try base.syncDirectory(path)
        try state.withLock { s in
            if s.power.isCut { throw IOError(errnoCode: EIO, reason: "fsync directory (power cut)") }
            for stash in s.power.directorySynced(snapshot) { Glibc.unlink(stash) }
        }
    }
}

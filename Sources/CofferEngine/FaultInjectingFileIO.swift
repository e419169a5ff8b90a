import NIOCore
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A ``FileIO`` that forwards to the real file system but can be told to fail: the seam the durability tests use for
/// short writes, failing fsyncs, a full disk and read errors. Thread-safe; rules apply to files whose path contains
/// ``Rules/pathFilter`` (all files when empty).
public final class FaultInjectingFileIO: FileIO {
    /// What to break. Counters count down as calls happen.
    public struct Rules: Sendable {
        /// Only files whose path contains this are affected ("" = all).
        public var pathFilter = ""
        /// The next this-many fsync/fdatasync calls fail with EIO.
        public var failingSyncs = 0
        /// pwrite writes at most this many bytes per call (short writes).
        public var maxBytesPerWrite: Int?
        /// After this many more bytes are written, every pwrite fails with ENOSPC.
        public var bytesUntilFull: Int64?
        /// The next this-many pread calls fail with EIO.
        public var failingReads = 0

        public init() {}
    }

    private let base: any FileIO
    private let state: Mutex<(rules: Rules, paths: [CInt: String], syncs: Int)>

    public init(base: any FileIO = PosixFileIO(), rules: Rules = Rules()) {
        self.base = base
        self.state = Mutex((rules: rules, paths: [:], syncs: 0))
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

    public func open(_ path: String, flags: CInt, mode: mode_t) throws -> CInt {
        let fd = try base.open(path, flags: flags, mode: mode)
        state.withLock { $0.paths[fd] = path }
        return fd
    }

    public func close(_ fd: CInt) throws {
        state.withLock { _ = $0.paths.removeValue(forKey: fd) }
        try base.close(fd)
    }

    public func pwrite(_ fd: CInt, _ bytes: UnsafeRawBufferPointer, offset: Int64) throws -> Int {
        let allowed: Int = try state.withLock { s in
            guard affected(fd, s.rules, s.paths) else { return bytes.count }
            var allowed = bytes.count
            if let cap = s.rules.maxBytesPerWrite { allowed = min(allowed, max(1, cap)) }
            if let left = s.rules.bytesUntilFull {
                if left <= 0 { throw IOError(errnoCode: ENOSPC, reason: "pwrite (injected)") }
                allowed = min(allowed, Int(left))
                s.rules.bytesUntilFull = left - Int64(allowed)
            }
            return allowed
        }
        return try base.pwrite(fd, UnsafeRawBufferPointer(rebasing: bytes[0..<allowed]), offset: offset)
    }

    public func pread(_ fd: CInt, into bytes: UnsafeMutableRawBufferPointer, offset: Int64) throws -> Int {
        try state.withLock { s in
            if affected(fd, s.rules, s.paths) && s.rules.failingReads > 0 {
                s.rules.failingReads -= 1
                throw IOError(errnoCode: EIO, reason: "pread (injected)")
            }
        }
        return try base.pread(fd, into: bytes, offset: offset)
    }

    private func sync(_ fd: CInt, _ call: () throws -> Void) throws {
        try state.withLock { s in
            if affected(fd, s.rules, s.paths) && s.rules.failingSyncs > 0 {
                s.rules.failingSyncs -= 1
                throw IOError(errnoCode: EIO, reason: "fsync (injected)")
            }
        }
        try call()
        state.withLock { $0.syncs += 1 }
    }

    public func fdatasync(_ fd: CInt) throws { try sync(fd) { try base.fdatasync(fd) } }
    public func fsync(_ fd: CInt) throws { try sync(fd) { try base.fsync(fd) } }
    public func ftruncate(_ fd: CInt, length: Int64) throws { try base.ftruncate(fd, length: length) }
    public func fileSize(_ fd: CInt) throws -> Int64 { try base.fileSize(fd) }
    public func unlink(_ path: String) throws { try base.unlink(path) }
    public func rename(_ from: String, to: String) throws { try base.rename(from, to: to) }
    public func makeDirectory(_ path: String) throws { try base.makeDirectory(path) }
    public func listDirectory(_ path: String) throws -> [String] { try base.listDirectory(path) }
    public func syncDirectory(_ path: String) throws { try base.syncDirectory(path) }
}

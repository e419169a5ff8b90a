import Dispatch
import Synchronization

@testable import CofferEngine

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A ``FileIO`` over the real file system that can hold the group-commit writer inside a segment `fdatasync` until
/// the test releases it, and that records the size of every `pwrite` to a segment. Lets a test queue writes behind a
/// known batch without sleeping.
final class GateFileIO: FileIO {
    private struct State {
        var paths: [CInt: String] = [:]
        var holdNextSegmentSync = false
        var segmentWrites: [Int] = []
    }

    private let base = PosixFileIO()
    private let state = Mutex(State())
    private let entered = DispatchSemaphore(value: 0)
    private let released = DispatchSemaphore(value: 0)

    /// The next `fdatasync` of a segment file blocks (after signalling ``waitUntilHeld()``) until ``release()``.
    func holdNextSegmentSync() {
        state.withLock { $0.holdNextSegmentSync = true }
    }

    /// Returns once the writer is blocked inside the held `fdatasync`.
    func waitUntilHeld() async {
        let entered = self.entered
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().async {
                entered.wait()
                continuation.resume()
            }
        }
    }

    func release() {
        released.signal()
    }

    /// Bytes of every `pwrite` call to a segment file, in order (a short write counts as its own call).
    var segmentWrites: [Int] { state.withLock { $0.segmentWrites } }

    func open(_ path: String, flags: CInt, mode: mode_t) throws -> CInt {
        let fd = try base.open(path, flags: flags, mode: mode)
        state.withLock { $0.paths[fd] = path }
        return fd
    }

    func close(_ fd: CInt) throws {
        state.withLock { _ = $0.paths.removeValue(forKey: fd) }
        try base.close(fd)
    }

    func pwrite(_ fd: CInt, _ bytes: UnsafeRawBufferPointer, offset: Int64) throws -> Int {
        let written = try base.pwrite(fd, bytes, offset: offset)
        state.withLock { s in
            if s.paths[fd]?.hasSuffix(".seg") ?? false { s.segmentWrites.append(written) }
        }
        return written
    }

    func fdatasync(_ fd: CInt) throws {
        let hold = state.withLock { s in
            guard s.holdNextSegmentSync, s.paths[fd]?.hasSuffix(".seg") ?? false else { return false }
            s.holdNextSegmentSync = false
            return true
        }
        if hold {
            entered.signal()
            released.wait()
        }
        try base.fdatasync(fd)
    }

    func pread(_ fd: CInt, into bytes: UnsafeMutableRawBufferPointer, offset: Int64) throws -> Int {
        try base.pread(fd, into: bytes, offset: offset)
    }
    func fsync(_ fd: CInt) throws { try base.fsync(fd) }
    func ftruncate(_ fd: CInt, length: Int64) throws { try base.ftruncate(fd, length: length) }
    func fileSize(_ fd: CInt) throws -> Int64 { try base.fileSize(fd) }
    func unlink(_ path: String) throws { try base.unlink(path) }
    func rename(_ from: String, to: String) throws { try base.rename(from, to: to) }
    func makeDirectory(_ path: String) throws { try base.makeDirectory(path) }
    func listDirectory(_ path: String) throws -> [String] { try base.listDirectory(path) }
    func syncDirectory(_ path: String) throws { try base.syncDirectory(path) }
}

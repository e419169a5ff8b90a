import NIOCore
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Space held back for the writes that free space. `<dir>/reserve` is a file of fixed size, allocated with
/// `posix_fallocate`. When the disk fills, the writer gives it up so that deletes and compaction (which need a little
/// room to write tombstones and relocate live records) still succeed; while it is not held, new versions (puts) are
/// refused with 507, so they cannot eat the room those need. It is taken again (one `posix_fallocate`, cheap even when
/// it fails) before the next new version, as soon as deleting spill files or compaction has made room.
///
/// Used from the writer thread and the I/O pool only: its methods block.
final class SpaceReserve: Sendable {
    let path: String
    let size: Int64
    private let io: any FileIO
    private let state: Mutex<Bool>

    init(path: String, size: Int64, io: any FileIO) {
        self.path = path
        self.size = size
        self.io = io
        self.state = Mutex(false)
    }

    /// `true` while the reserve file is in place (always `true` when the reserve is turned off).
    var isHeld: Bool { size == 0 || state.withLock { $0 } }

    /// Makes sure the reserve file exists at full size; returns whether it does. A failed attempt (disk full) leaves
    /// no partial file behind.
    ///
    /// Errors: none for a full disk (returns `false`); other I/O errors are thrown.
    @discardableResult
    func acquire() throws -> Bool {
        guard size > 0 else { return true }
        return try state.withLock { held in
            if held { return true }
            let fd = try io.open(path, flags: O_RDWR | O_CREAT, mode: 0o644)
            defer { try? io.close(fd) }
            let result = posix_fallocate(fd, 0, off_t(size))
            if result == ENOSPC || result == EDQUOT {
                try? io.ftruncate(fd, length: 0)
                return false
            }
            if result != 0 { throw IOError(errnoCode: result, reason: "posix_fallocate reserve") }
            try io.fsync(fd)
            held = true
            return true
        }
    }

    /// ``acquire()``, with any I/O error counted as "not held".
    func tryAcquire() -> Bool {
        (try? acquire()) ?? false
    }

    /// Gives the space back to the file system; returns `false` if it was not held.
    func release() -> Bool {
        guard size > 0 else { return false }
        return state.withLock { held in
            guard held else { return false }
            held = false
            // Truncating frees the blocks at once, even if someone holds the file open.
            if let fd = try? io.open(path, flags: O_RDWR, mode: 0) {
                try? io.ftruncate(fd, length: 0)
                try? io.close(fd)
            }
            return true
        }
    }
}

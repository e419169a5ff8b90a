import CofferEngine
import CofferTestKit
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What the seam remembers between syncs for the power-loss model. Mutated only under the seam's lock.
struct PowerModel {
    enum Op {
        /// `bytes` written at `offset`; `overwritten` were the bytes there before (within the old size).
        case write(offset: Int64, bytes: [UInt8], sizeBefore: Int64, overwritten: [UInt8])
        /// The file was cut (or extended) to `length`; `removed` were the bytes past it.
        case truncate(length: Int64, sizeBefore: Int64, removed: [UInt8])
    }

    struct TrackedFile {
        /// The current name.
        var path: String
        /// The name its directory holds durably; `nil` when it was created since the directory's last fsync.
        var durableName: String?
        /// Changes since the file's last successful sync, oldest first, with the clock value of each.
        var ops: [Op] = []
        var clocks: [UInt64] = []
        /// Set when the file was unlinked while its name was durable: `path` is then a hard link the seam keeps (a
        /// stash) so that a power cut before the directory's next fsync can bring the name back.
        var unlinked = false
    }

    /// One tracked name in a directory when its fsync started.
    struct Entry {
        var id: Int
        var name: String
        var unlinked: Bool
    }

    /// Stash names start with this; the seam hides them from directory listings.
    static let stashPrefix = ".powerloss-unlinked-"

    var isCut = false
    /// Increases with every recorded change.
    var clock: UInt64 = 0
    var files: [Int: TrackedFile] = [:]
    var byPath: [String: Int] = [:]
    private var nextID = 0
    private var stashes = 0

    /// Only data files are modelled: segments, spill files and recovery copies (not the lock or other files).
    static func tracks(_ path: String) -> Bool {
        for directory in [Format.segmentsDirectory, Format.blobsDirectory, Format.recoveryDirectory]
        where path.contains("/" + directory + "/") {
            return true
        }
        return false
    }

    static func parent(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return String(path[..<slash])
    }

    static func readWhole(_ path: String) throws -> [UInt8] {
        try read(path, count: nil, offset: 0)
    }

    /// `count` bytes (all, when `nil`) at `offset` of the file at `path`, through a descriptor of its own (the
    /// engine's may be write-only).
    static func read(_ path: String, count: Int?, offset: Int64) throws -> [UInt8] {
        let io = PosixFileIO()
        let fd = try io.open(path, flags: O_RDONLY, mode: 0)
        defer { try? io.close(fd) }
        let count = try count ?? Int(io.fileSize(fd) - offset)
        return Array(try io.read(fd, count: count, offset: offset).readableBytesView)
    }

    private mutating func id(for path: String, durableName: String?) -> Int {
        if let id = byPath[path] { return id }
        let id = nextID
        nextID += 1
        files[id] = TrackedFile(path: path, durableName: durableName)
        byPath[path] = id
        return id
    }

    mutating func created(_ path: String) {
        if let old = byPath.removeValue(forKey: path) { files[old] = nil }
        _ = id(for: path, durableName: nil)
    }

    mutating func record(_ path: String, _ op: Op) {
        let id = id(for: path, durableName: path)
        clock += 1
        files[id]!.ops.append(op)
        files[id]!.clocks.append(clock)
    }

    /// A sync that started when the clock read `mark` succeeded: every change up to then is durable.
    mutating func synced(_ path: String, upTo mark: UInt64) {
        guard let id = byPath[path], var file = files[id] else { return }
        let done = file.clocks.prefix(while: { $0 <= mark }).count
        file.ops.removeFirst(done)
        file.clocks.removeFirst(done)
        files[id] = file
    }

    /// Where to keep a file about to be unlinked: a stash name when its name is durable (the unlink can then be
    /// undone by a power cut), `nil` when its name never was (it simply goes).
    mutating func stash(for path: String) -> String? {
        let durable = byPath[path].map { files[$0]!.durableName } ?? path
        guard durable != nil else { return nil }
        stashes += 1
        return Self.parent(path) + "/" + Self.stashPrefix + "\(stashes)"
    }

    /// `path` was unlinked; its inode lives on at `stash` (if any) until the directory is fsynced.
    mutating func unlinked(_ path: String, stash: String?) {
        guard let stash else {
            if let id = byPath.removeValue(forKey: path) { files[id] = nil }
            return
        }
        let id = id(for: path, durableName: path)
        byPath.removeValue(forKey: path)
        files[id]!.path = stash
        files[id]!.unlinked = true
        byPath[stash] = id
    }

    mutating func renamed(_ from: String, to: String) {
        if let old = byPath.removeValue(forKey: to) { files[old] = nil }
        let id = id(for: from, durableName: from)
        byPath.removeValue(forKey: from)
        files[id]!.path = to
        byPath[to] = id
    }

    /// The tracked files whose current name is in `directory`, taken when a directory sync starts.
    func entries(in directory: String) -> [Entry] {
        files.compactMap { id, file in
            Self.parent(file.path) == directory ? Entry(id: id, name: file.path, unlinked: file.unlinked) : nil
        }
    }

    /// The directory sync that started with `snapshot` succeeded: those names are durable, and so are those unlinks.
    /// Returns the stashes that are no longer needed (the caller removes them).
    mutating func directorySynced(_ snapshot: [Entry]) -> [String] {
        var done: [String] = []
        for entry in snapshot where files[entry.id] != nil {
            if entry.unlinked {
                done.append(entry.name)
                byPath.removeValue(forKey: entry.name)
                files[entry.id] = nil
            } else {
                files[entry.id]!.durableName = entry.name
            }
        }
        return done
    }
}

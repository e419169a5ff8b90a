import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A fresh directory made with `mkdtemp` under /tmp; every test makes its own and removes it.
struct TestDirectory: Sendable {
    let path: String

    init() throws {
        var template = Array("/tmp/coffer-engine-test-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        guard let made else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        path = String(cString: made)
    }

    /// An existing or future directory at `path`, removed by whoever made its parent.
    init(path: String) {
        self.path = path
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }

    var segments: String { path + "/segments" }
    var blobs: String { path + "/blobs" }
    var recovery: String { path + "/recovery" }

    /// The path of segment `id`.
    func segment(_ id: UInt32) -> String {
        segments + "/" + String(format: "%016llx", UInt64(id)) + ".seg"
    }

    /// The path of the committed spill file `id`.
    func spill(_ id: UInt64) -> String {
        blobs + "/" + String(format: "%016llx", id) + ".blob"
    }
}

/// Runs `body` with a fresh directory and removes it afterwards, whether `body` throws or not.
func withTestDirectory<T>(_ body: (TestDirectory) async throws -> T) async throws -> T {
    let directory = try TestDirectory()
    defer { directory.remove() }
    return try await body(directory)
}

/// Plain file helpers on top of POSIX, independent of the engine's own FileIO.
enum Files {
    static func read(_ path: String) throws -> [UInt8] {
        Array(try Data(contentsOf: URL(fileURLWithPath: path)))
    }

    static func write(_ path: String, _ bytes: [UInt8]) throws {
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    static func append(_ path: String, _ bytes: [UInt8]) throws {
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(bytes))
    }

    static func size(_ path: String) throws -> Int64 {
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        return (attributes[.size] as? NSNumber)?.int64Value ?? -1
    }

    static func exists(_ path: String) -> Bool {
        FileManager.default.fileExists(atPath: path)
    }

    /// Sorted names in `path` (empty when it does not exist).
    static func list(_ path: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted()
    }

    /// Flips every bit of the byte at `offset`, in place, without changing the file's size.
    static func corrupt(_ path: String, at offset: Int64, xor mask: UInt8 = 0xFF) throws {
        let fd = open(path, O_RDWR)
        guard fd >= 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        defer { close(fd) }
        var byte: UInt8 = 0
        guard pread(fd, &byte, 1, off_t(offset)) == 1 else { throw POSIXError(.EIO) }
        byte ^= mask
        guard pwrite(fd, &byte, 1, off_t(offset)) == 1 else { throw POSIXError(.EIO) }
    }

    /// Removes every entry of a directory, keeping the directory.
    static func empty(_ path: String) throws {
        for name in list(path) { try FileManager.default.removeItem(atPath: path + "/" + name) }
    }
}

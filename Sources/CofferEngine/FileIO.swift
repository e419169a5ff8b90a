import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The engine's only door to the file system: every syscall that touches data goes through it, so tests can inject
/// short writes, failing fsyncs, a full disk or read errors (the tests' `FaultInjectingFileIO`).
///
/// All methods block: call them only on the engine's own threads, never on an event loop or the cooperative pool.
/// Errors are NIO's `IOError` carrying the errno.
public protocol FileIO: Sendable {
    func open(_ path: String, flags: CInt, mode: mode_t) throws -> CInt
    func close(_ fd: CInt) throws
    /// May write fewer bytes than given; see ``FileIO/writeAll(_:_:offset:)``.
    func pwrite(_ fd: CInt, _ bytes: UnsafeRawBufferPointer, offset: Int64) throws -> Int
    /// May read fewer bytes than asked (0 at end of file).
    func pread(_ fd: CInt, into bytes: UnsafeMutableRawBufferPointer, offset: Int64) throws -> Int
    func fdatasync(_ fd: CInt) throws
    func fsync(_ fd: CInt) throws
    func ftruncate(_ fd: CInt, length: Int64) throws
    func fileSize(_ fd: CInt) throws -> Int64
    func unlink(_ path: String) throws
    func rename(_ from: String, to: String) throws
    /// Creates the directory; succeeds if it already exists.
    func makeDirectory(_ path: String) throws
    /// Names in the directory, without `.` and `..`.
    func listDirectory(_ path: String) throws -> [String]
    /// fsyncs a directory, making created, renamed and removed entries durable.
    func syncDirectory(_ path: String) throws
}

extension FileIO {
    /// Writes all of `bytes` at `offset`, looping over short writes.
    public func writeAll(_ fd: CInt, _ bytes: UnsafeRawBufferPointer, offset: Int64) throws {
        var done = 0
        while done < bytes.count {
            let n = try pwrite(fd, UnsafeRawBufferPointer(rebasing: bytes[done...]), offset: offset + Int64(done))
            if n <= 0 { throw IOError(errnoCode: EIO, reason: "pwrite wrote nothing") }
            done += n
        }
    }

    /// Writes the readable bytes of `buffer` at `offset`.
    public func writeAll(_ fd: CInt, _ buffer: ByteBuffer, offset: Int64) throws {
        try buffer.withUnsafeReadableBytes { try writeAll(fd, $0, offset: offset) }
    }

    /// Reads up to `count` bytes at `offset`, stopping early only at end of file.
    public func read(_ fd: CInt, count: Int, offset: Int64) throws -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: count)
        let got = try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { raw in
            var done = 0
            let target = UnsafeMutableRawBufferPointer(rebasing: raw[0..<count])
            while done < count {
                let n = try pread(
                    fd, into: UnsafeMutableRawBufferPointer(rebasing: target[done...]), offset: offset + Int64(done))
                if n == 0 { break }
                done += n
            }
            return done
        }
        _ = got
        return buffer
    }
}

/// ``FileIO`` on the real POSIX calls.
public struct PosixFileIO: FileIO {
    public init() {}

    private static func check(_ result: CInt, _ reason: String) throws {
        if result < 0 { throw IOError(errnoCode: errno, reason: reason) }
    }

    private static func retrying<T: BinaryInteger>(_ reason: String, _ body: () -> T) throws -> T {
        while true {
            let result = body()
            if result >= 0 { return result }
            if errno == EINTR { continue }
            throw IOError(errnoCode: errno, reason: reason)
        }
    }

    public func open(_ path: String, flags: CInt, mode: mode_t) throws -> CInt {
        try Self.retrying("open \(path)") { Glibc.open(path, flags | O_CLOEXEC, mode) }
    }

    public func close(_ fd: CInt) throws {
        try Self.check(Glibc.close(fd), "close")
    }

    public func pwrite(_ fd: CInt, _ bytes: UnsafeRawBufferPointer, offset: Int64) throws -> Int {
        try Self.retrying("pwrite") { Glibc.pwrite(fd, bytes.baseAddress, bytes.count, off_t(offset)) }
    }

    public func pread(_ fd: CInt, into bytes: UnsafeMutableRawBufferPointer, offset: Int64) throws -> Int {
        try Self.retrying("pread") { Glibc.pread(fd, bytes.baseAddress, bytes.count, off_t(offset)) }
    }

    public func fdatasync(_ fd: CInt) throws {
        _ = try Self.retrying("fdatasync") { Glibc.fdatasync(fd) }
    }

    public func fsync(_ fd: CInt) throws {
        _ = try Self.retrying("fsync") { Glibc.fsync(fd) }
    }

    public func ftruncate(_ fd: CInt, length: Int64) throws {
        _ = try Self.retrying("ftruncate") { Glibc.ftruncate(fd, off_t(length)) }
    }

    public func fileSize(_ fd: CInt) throws -> Int64 {
        var info = stat()
        try Self.check(fstat(fd, &info), "fstat")
        return Int64(info.st_size)
    }

    public func unlink(_ path: String) throws {
        try Self.check(Glibc.unlink(path), "unlink \(path)")
    }

    public func rename(_ from: String, to: String) throws {
        try Self.check(Glibc.rename(from, to), "rename \(from)")
    }

    public func makeDirectory(_ path: String) throws {
        if mkdir(path, 0o755) < 0 && errno != EEXIST {
            throw IOError(errnoCode: errno, reason: "mkdir \(path)")
        }
    }

    public func listDirectory(_ path: String) throws -> [String] {
        guard let dir = opendir(path) else { throw IOError(errnoCode: errno, reason: "opendir \(path)") }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    public func syncDirectory(_ path: String) throws {
        let fd = try open(path, flags: O_RDONLY | O_DIRECTORY, mode: 0)
        defer { _ = Glibc.close(fd) }
        try fsync(fd)
    }
}

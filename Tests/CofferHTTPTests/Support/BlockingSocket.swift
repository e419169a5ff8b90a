import Dispatch

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A plain blocking TCP socket to 127.0.0.1, for clients NIO would not model: one that stops reading with a tiny
/// receive buffer. Reads run on a Dispatch thread, never on the cooperative pool.
final class BlockingSocket: @unchecked Sendable {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    private let fd: Int32

    /// Connects to 127.0.0.1:`port` with the given receive buffer (set before connecting, so the window stays small).
    init(port: Int, receiveBuffer: Int32) throws {
        #if canImport(Glibc)
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
        fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { throw Failure(description: "socket: errno \(errno)") }
        var size = receiveBuffer
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        var timeout = timeval(tv_sec: 20, tv_usec: 0)  // no read in a test waits longer
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else {
            close(fd)
            throw Failure(description: "connect: errno \(errno)")
        }
    }

    deinit { close(fd) }

    func send(_ text: String) throws {
        let bytes = Array(text.utf8)
        let sent = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard sent == bytes.count else { throw Failure(description: "write: errno \(errno)") }
    }

    /// Waits (up to 20 s) until response bytes wait unread in the receive queue, so the server has begun to send.
    func waitForUnreadBytes() async throws {
        let clock = ContinuousClock()
        let end = clock.now + .seconds(20)
        while clock.now < end {
            var unread: Int32 = 0
            guard ioctl(fd, UInt(FIONREAD), &unread) == 0 else {
                throw Failure(description: "FIONREAD: errno \(errno)")
            }
            if unread > 0 { return }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw Failure(description: "no response bytes within 20 s")
    }

    /// Reads until the peer closes (or resets) the connection; returns how many bytes arrived. Throws if the
    /// connection is still open after the 20 s read timeout.
    func countUntilClosed() async throws -> Int {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                var total = 0
                var buffer = [UInt8](repeating: 0, count: 64 * 1024)
                while true {
                    let n = buffer.withUnsafeMutableBytes { read(self.fd, $0.baseAddress, $0.count) }
                    if n > 0 {
                        total += n
                    } else if n == 0 || errno == ECONNRESET {
                        continuation.resume(returning: total)
                        return
                    } else if errno != EINTR {
                        continuation.resume(throwing: Failure(description: "read after \(total) bytes: errno \(errno)"))
                        return
                    }
                }
            }
        }
    }
}

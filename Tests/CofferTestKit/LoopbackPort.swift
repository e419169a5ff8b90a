#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Free TCP ports on 127.0.0.1, for servers the tests start that cannot take port 0 and report back (moto, dockerd's
/// published ports).
public enum LoopbackPort {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// A port that refuses connections for as long as the returned descriptor stays open: bound, never listening,
    /// so no other process can take it meanwhile (a port merely closed can be handed to the next server that binds
    /// port 0). Close the descriptor when done.
    public static func refusing() throws -> (port: Int, descriptor: Int32) {
        try bound(closing: false)
    }

    /// A port that was free a moment ago (bound to port 0, read back, closed).
    public static func free() throws -> Int {
        try bound(closing: true).port
    }

    private static func bound(closing: Bool) throws -> (port: Int, descriptor: Int32) {
        #if canImport(Glibc)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
        let fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { throw Failure(description: "socket: errno \(errno)") }
        var keep = false
        defer { if closing || !keep { close(fd) } }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0 else { throw Failure(description: "bind: errno \(errno)") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard named == 0 else { throw Failure(description: "getsockname: errno \(errno)") }
        keep = true
        return (Int(UInt16(bigEndian: address.sin_port)), fd)
    }
}

import CofferTestKit
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Where the `coffer` binary under test is: `COFFER_BINARY` if set, else the one SwiftPM built next to the test
/// bundle (the test target depends on the executable, so it is built first).
enum CofferBinary {
    static func path() throws -> String {
        if let path = ProcessInfo.processInfo.environment["COFFER_BINARY"], !path.isEmpty { return path }
        if let found = candidates().first(where: { FileManager.default.isExecutableFile(atPath: $0) }) {
            return found
        }
        throw ChildNodeError("no coffer binary found (tried \(candidates())); set COFFER_BINARY")
    }

    /// The build directory of the running test bundle and its parents (on macOS the bundle's executable sits in
    /// `<build>/cofferPackageTests.xctest/Contents/MacOS`), then the default build directory.
    static func candidates() -> [String] {
        var executables = [CommandLine.arguments[0]]
        if let resolved = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            executables.insert(resolved, at: 0)
        }
        var paths: [String] = []
        for executable in executables {
            var directory = URL(fileURLWithPath: executable).standardizedFileURL.deletingLastPathComponent()
            for _ in 0..<4 {
                paths.append(directory.appendingPathComponent("coffer").path)
                directory.deleteLastPathComponent()
            }
        }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
        paths.append(root.appendingPathComponent(".build/debug/coffer").path)
        return paths
    }
}

/// A fresh directory under /tmp for one test: the node's data directory (`data`) and its log files live in it.
struct ProcessTestDirectory: Sendable {
    let path: String

    init() throws {
        var template = Array("/tmp/coffer-process-test-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        guard let made else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        path = String(cString: made)
    }

    var data: String { path + "/data" }

    /// Removed unless `COFFER_KEEP_TEST_DIRS` is set (to look at the data and logs after a failure).
    func remove() {
        if ProcessInfo.processInfo.environment["COFFER_KEEP_TEST_DIRS"] != nil {
            print("kept test directory \(path)")
            return
        }
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// Runs a sequence of `coffer serve` processes on one data directory, one at a time: each start gets its own log
/// file (`node-<n>.log`). Whatever happens, `finish()` kills a node still running and removes the directory.
final class NodeRunner: @unchecked Sendable {
    let directory: ProcessTestDirectory
    private(set) var current: ChildNode?
    private(set) var starts = 0

    init() throws { directory = try ProcessTestDirectory() }

    /// Starts a node on the data directory (after the previous one exited) and waits until it answers /health.
    @discardableResult
    func start(extraArguments: [String] = [], launcher: [String] = []) async throws -> ChildNode {
        if let current, current.isRunning { throw ChildNodeError("a node is still running") }
        starts += 1
        let node = try ChildNode(
            dataDirectory: directory.data, logPath: directory.path + "/node-\(starts).log",
            extraArguments: extraArguments, launcher: launcher)
        current = node
        try await node.waitUntilReady()
        return node
    }

    /// SIGKILLs the running node, if any, and removes the directory.
    func finish() async {
        if let current, current.isRunning { try? await current.killHard() }
        directory.remove()
    }
}

/// Runs `body` with a ``NodeRunner``, cleaning up after it whether it throws or not.
func withNodeRunner(_ body: (NodeRunner) async throws -> Void) async throws {
    let runner = try NodeRunner()
    do {
        try await body(runner)
    } catch {
        await runner.finish()
        throw error
    }
    await runner.finish()
}

/// The schedules' generator (the test kit's SplitMix64), so a failing schedule can be replayed from its printed seed.
typealias SeededGenerator = SplitMix64

enum Environment {
    /// The integer value of environment variable `name`, or `fallback` when it is unset or not a number.
    static func integer(_ name: String, default fallback: Int) -> Int {
        ProcessInfo.processInfo.environment[name].flatMap { Int($0) } ?? fallback
    }
}

/// Byte-exact comparison without an element-by-element loop (the tests are built without optimization).
func sameBytes(_ a: [UInt8], _ b: [UInt8]) -> Bool {
    guard a.count == b.count else { return false }
    guard !a.isEmpty else { return true }
    return a.withUnsafeBytes { x in b.withUnsafeBytes { y in memcmp(x.baseAddress!, y.baseAddress!, x.count) == 0 } }
}

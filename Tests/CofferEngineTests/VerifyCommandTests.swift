import CofferCore
import Foundation
import Testing

@testable import CofferEngine

/// The `coffer verify` command itself: exit codes, the text and JSON reports, `--repair`. Runs the `coffer` binary
/// built next to the test bundle (or the one `COFFER_BINARY` names); skipped when there is none.
@Suite("Verify: the coffer verify command", .enabled(if: CofferBinary.path != nil))
struct VerifyCommandTests {
    struct Run {
        var status: Int32
        var output: String
        var errors: String
    }

    static func coffer(_ arguments: [String]) async throws -> Run {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: CofferBinary.path!)
        process.arguments = arguments
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        let (ended, continuation) = AsyncStream.makeStream(of: Void.self)
        process.terminationHandler = { _ in continuation.finish() }
        try process.run()
        // Drain both pipes while the process runs, so a large report cannot block it.
        async let output = out.fileHandleForReading.readToEnd()
        async let errors = err.fileHandleForReading.readToEnd()
        let (stdout, stderr) = try await (output, errors)
        for await _ in ended {}
        return Run(
            status: process.terminationStatus, output: String(decoding: stdout ?? Data(), as: UTF8.self),
            errors: String(decoding: stderr ?? Data(), as: UTF8.self))
    }

    @Test("exit 0 when clean, 1 with the damaged keys listed, --json, nothing changed; --repair; exit 0 after")
    func exitCodes() async throws {
        try await withTestDirectory { directory async throws in
            let layout = try await VerifyTests.populate(directory)
            let clean = try await Self.coffer(["verify", "--dir", directory.path])
            #expect(clean.status == 0, "\(clean.output)\(clean.errors)")
            #expect(clean.output.contains("result: clean"))

            try VerifyTests.damage(directory, layout)
            let before = try VerifyTests.snapshot(directory.path)
            let damaged = try await Self.coffer(["verify", "--dir", directory.path])
            #expect(damaged.status == 1, "\(damaged.output)\(damaged.errors)")
            for key in VerifyTests.victims { #expect(damaged.output.contains("\(key): "), "\(key)") }
            let json = try await Self.coffer(["verify", "--dir", directory.path, "--json"])
            #expect(json.status == 1)
            let object = try #require(try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any])
            #expect(object["status"] as? String == "damaged")
            let report = try #require(object["report"] as? [String: Any])
            let keys = (report["damagedBlobs"] as? [[String: Any]] ?? []).compactMap { $0["key"] as? String }
            #expect(Set(keys) == Set(VerifyTests.victims))
            #expect(try VerifyTests.snapshot(directory.path) == before)

            let repair = try await Self.coffer(["verify", "--dir", directory.path, "--repair"])
            #expect(repair.status == 0, "\(repair.output)\(repair.errors)")
            #expect(repair.output.contains("deleted 3 damaged keys"))
            let after = try await Self.coffer(["verify", "--dir", directory.path])
            #expect(after.status == 0, "\(after.output)")
            #expect(after.output.contains("(quarantined: already repaired)"))
        }
    }

    @Test("exit 2 for crash leftovers only; exit 3 while a node holds the directory")
    func leftoversAndInUse() async throws {
        try await withTestDirectory { directory async throws in
            _ = try await VerifyTests.populate(directory)
            try Files.write(directory.blobs + "/00000000000000ff.blob.partial", [1, 2, 3])
            try Files.append(directory.segment(1), Array(repeating: 0, count: 100))
            let leftovers = try await Self.coffer(["verify", "--dir", directory.path])
            #expect(leftovers.status == 2, "\(leftovers.output)\(leftovers.errors)")
            #expect(
                leftovers.output.contains("torn_tail") && leftovers.output.contains("00000000000000ff.blob.partial"))
            try await withEngine(testConfiguration(directory)) { _ async throws in
                let busy = try await Self.coffer(["verify", "--dir", directory.path])
                #expect(busy.status == 3)
                #expect(busy.errors.contains("in use"))
            }
            let cleaned = try await Self.coffer(["verify", "--dir", directory.path])
            #expect(cleaned.status == 0, "the engine's start removed the leftovers: \(cleaned.output)")
        }
    }
}

/// The `coffer` executable the build put next to the test runner, or the one `COFFER_BINARY` names.
enum CofferBinary {
    static let path: String? = {
        if let path = ProcessInfo.processInfo.environment["COFFER_BINARY"] { return path }
        let runner = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var directory = runner.deletingLastPathComponent()
        // On Linux the runner is <bin>/<package>PackageTests.xctest; elsewhere it can sit deeper in a bundle.
        for _ in 0..<4 {
            let candidate = directory.appendingPathComponent("coffer").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            directory = directory.deletingLastPathComponent()
        }
        return nil
    }()
}

import ArgumentParser
import CofferCore
import CofferEngine
import Dispatch
import FoundationEssentials
import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

struct Verify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a data directory offline: every record, every spill file block; --repair quarantines damage.",
        discussion: """
            Reads every segment and every live spill file and verifies every checksum. Reports each damaged blob by \
            its key, every damaged byte range, torn tails and orphan or missing spill files. Changes nothing unless \
            --repair is given. The node must not be running on the directory.

            Exit status: 0 clean; 1 damage found (after --repair: damage left); 2 only crash leftovers (a torn tail, \
            orphan spill files) that the node's next start removes; 3 the check could not run (directory in use, \
            I/O error).

            --repair copies every damaged range and spill file into <dir>/quarantine/ (fsynced, listed in \
            quarantine/MANIFEST), opens the directory with the engine (whose recovery cuts torn tails and removes \
            orphans), and deletes every damaged key with a tombstone, so it reads as not found instead of failing or \
            serving an older version. Damaged bytes inside segments are left in place; the manifest marks them as \
            handled.
            """
    )

    @Option(help: "Data directory.")
    var dir: String = "./data"

    @Flag(help: "Quarantine the damage and delete the damaged keys (see above).")
    var repair = false

    @Flag(help: "Print the report as JSON.")
    var json = false

    @Flag(name: [.customShort("D"), .long], help: "Log at debug level.")
    var debug = false

    func run() async throws {
        bootstrapLogging(level: debug ? .debug : .warning)
        let verifier = Verifier(directory: dir)
        let exitCode: Int32
        do {
            if repair {
                let report = try await verifier.repair(logger: Logger(label: "coffer.verify"))
                print(json ? try Self.json(RepairOutput(report)) : VerifyText.repair(report))
                exitCode = report.after.exitCode
            } else {
                // Blocking reads: off the cooperative pool.
                let report = try await Self.offPool { try verifier.verify() }
                print(json ? try Self.json(VerifyOutput(report)) : VerifyText.report(report))
                exitCode = report.exitCode
            }
        } catch {
            StandardError.write("coffer verify: \(error)\n")
            throw ExitCode(3)
        }
        if exitCode != 0 { throw ExitCode(exitCode) }
    }

    private static func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(with: Result { try body() }) }
        }
    }

    private static func json(_ value: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }
}

/// The JSON form of a report: the report plus its status and exit code.
private struct VerifyOutput: Encodable {
    var report: VerifyReport
    var status: VerifyReport.Status
    var exitCode: Int32

    init(_ report: VerifyReport) {
        self.report = report
        self.status = report.status
        self.exitCode = report.exitCode
    }
}

/// The JSON form of a repair: both reports with their status, and what the repair did.
private struct RepairOutput: Encodable {
    var before: VerifyOutput
    var after: VerifyOutput
    var quarantined: [String]
    var keysDeleted: [String]
    var keysAlreadyAbsent: [String]
    var recoveryBytesCut: Int64
    var orphansRemoved: Int

    init(_ report: RepairReport) {
        before = VerifyOutput(report.before)
        after = VerifyOutput(report.after)
        quarantined = report.quarantined
        keysDeleted = report.keysDeleted
        keysAlreadyAbsent = report.keysAlreadyAbsent
        recoveryBytesCut = report.recoveryBytesCut
        orphansRemoved = report.orphansRemoved
    }
}

/// The human-readable form of the reports.
enum VerifyText {
    static func report(_ report: VerifyReport) -> String {
        var out = "coffer verify \(report.directory)\n"
        out += "  \(report.segmentsScanned) segments, \(report.recordsVerified) records verified, "
        out += "\(report.liveBlobs) live blobs\n"
        out += "  \(report.spillFilesVerified) spill files verified (\(report.spillBlocksVerified) blocks), "
        out += "\(report.bytesRead) bytes read\n"
        if !report.damagedBlobs.isEmpty {
            out += "damaged blobs (\(report.damagedBlobs.count)):\n"
            for blob in report.damagedBlobs {
                out +=
                    "  \(blob.key): \(blob.problem.rawValue), record at segment \(blob.segment) offset \(blob.offset)"
                if let sequence = blob.sequence { out += ", sequence \(sequence)" }
                if let spill = blob.spillID { out += ", spill \(spill)" }
                out += "\n    \(blob.detail)\n"
            }
        }
        if !report.regions.isEmpty {
            out += "damaged regions (\(report.regions.count)):\n"
            for region in report.regions {
                out += "  segment \(region.segment) bytes \(region.offset)..<\(region.offset + region.length) "
                out += "(\(region.length) bytes): \(region.kind.rawValue)"
                out += region.quarantined ? " (quarantined: already repaired)\n" : "\n"
                for record in region.records.prefix(20) {
                    out += "    offset \(record.offset): key \(record.key.map { "\"\($0)\"" } ?? "unreadable")"
                    if let sequence = record.sequence { out += ", sequence \(sequence)" }
                    if let kind = record.kind { out += ", \(kind)" }
                    out += record.intact ? ", intact" : (record.headerIntact ? ", header intact" : ", header damaged")
                    out += "\n"
                }
                if region.records.count > 20 { out += "    ... \(region.records.count - 20) more records\n" }
            }
        }
        if !report.orphanSpillFiles.isEmpty {
            out += "orphan spill files (\(report.orphanSpillFiles.count)), removed at the next start:\n"
            for name in report.orphanSpillFiles { out += "  blobs/\(name)\n" }
        }
        out += "result: \(report.status.rawValue) (exit \(report.exitCode))"
        return out
    }

    static func repair(_ report: RepairReport) -> String {
        var out = "before repair:\n" + Self.report(report.before) + "\n"
        guard report.before.status != .clean else { return out + "nothing to repair" }
        out += "repair:\n"
        out += "  quarantined \(report.quarantined.count) files under quarantine/ (listed in quarantine/MANIFEST)\n"
        for name in report.quarantined { out += "    \(name)\n" }
        out += "  deleted \(report.keysDeleted.count) damaged keys (they now read as not found)\n"
        for key in report.keysDeleted { out += "    \(key)\n" }
        if !report.keysAlreadyAbsent.isEmpty {
            out += "  \(report.keysAlreadyAbsent.count) damaged keys already read as not found\n"
            for key in report.keysAlreadyAbsent { out += "    \(key)\n" }
        }
        out += "  recovery cut \(report.recoveryBytesCut) bytes (copies under recovery/), "
        out += "removed \(report.orphansRemoved) orphan spill files\n"
        out += "after repair:\n" + Self.report(report.after)
        return out
    }
}

/// Writes to standard error.
enum StandardError {
    static func write(_ text: String) {
        var text = text
        text.withUTF8 { raw in _ = Glibc.write(2, raw.baseAddress, raw.count) }
    }
}

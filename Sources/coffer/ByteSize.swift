import ArgumentParser

/// A byte count given on the command line: `1048576`, `64KiB`, `5GiB`, `10MB` (powers of 1024 and of 1000).
struct ByteSize: ExpressibleByArgument, Sendable, CustomStringConvertible {
    let bytes: Int64

    init(bytes: Int64) { self.bytes = bytes }

    init?(argument: String) {
        let units: [(String, Int64)] = [
            ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("TiB", 1 << 40),
            ("KB", 1000), ("MB", 1_000_000), ("GB", 1_000_000_000), ("TB", 1_000_000_000_000),
            ("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30), ("B", 1),
        ]
        let text = argument.trimmingCharacters(in: " ")
        for (suffix, factor) in units where text.hasSuffix(suffix) {
            guard let value = Int64(text.dropLast(suffix.count).trimmingCharacters(in: " ")), value >= 0,
                value <= Int64.max / factor
            else { return nil }
            self.bytes = value * factor
            return
        }
        guard let value = Int64(text), value >= 0 else { return nil }
        self.bytes = value
    }

    var description: String { "\(bytes)" }
}

extension StringProtocol {
    fileprivate func trimmingCharacters(in character: Character) -> String {
        String(drop(while: { $0 == character }).reversed().drop(while: { $0 == character }).reversed())
    }
}

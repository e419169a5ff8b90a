/// Turns the raw path remainder of a request into a validated location.
///
/// Rules (docs/API.md): percent-decoded; 1–1024 bytes of valid UTF-8; no control characters (U+0000–U+001F,
/// U+007F–U+009F); no empty, `.` or `..` segments, so no leading, trailing or doubled `/`.
enum Location {
    static let maxBytes = 1024

    enum Failure: Error, Equatable {
        case badEncoding
        case invalid(String)
    }

    /// Percent-decodes `raw` (a `+` stays a `+`). Fails on a `%` not followed by two hex digits or invalid UTF-8.
    static func percentDecode(_ raw: Substring) -> Result<String, Failure> {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(raw.utf8.count)
        var iterator = raw.utf8.makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else {
                return .failure(.badEncoding)
            }
            bytes.append(high << 4 | low)
        }
        guard let decoded = String(validating: bytes, as: UTF8.self) else { return .failure(.badEncoding) }
        return .success(decoded)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    /// Validates a decoded `/store` or `/api/fileserver` location; returns why it is refused, or `nil`.
    static func problem(_ location: String) -> String? {
        let count = location.utf8.count
        if count == 0 { return "the location is empty" }
        if count > maxBytes { return "the location is longer than \(maxBytes) bytes" }
        if location.unicodeScalars.contains(where: { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) }) {
            return "the location contains a control character"
        }
        for segment in location.split(separator: "/", omittingEmptySubsequences: false) {
            if segment.isEmpty { return "the location has an empty path segment" }
            if segment == "." || segment == ".." { return "the location has a '.' or '..' segment" }
        }
        return nil
    }

    /// Validates an `/object` id: 1–32 ASCII letters and digits.
    static func objectIDProblem(_ id: String) -> String? {
        let ok =
            (1...32).contains(id.utf8.count)
            && id.utf8.allSatisfy { byte in
                (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte)
                    || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
                    || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
            }
        return ok ? nil : "object ids are 1 to 32 letters and digits ([A-Za-z0-9]{1,32})"
    }
}

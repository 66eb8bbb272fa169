#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public struct ConfigProblem: Error, Sendable {
    public var message: String
    public init(_ message: String) { self.message = message }
}

public enum ByteSize {
    /// Anything larger is refused before it is converted to an integer (2^60, 1 EiB: far past any
    /// real buffer, far from `Int.max`).
    public static let largest = 1 << 60

    /// Parses `1024`, `64KiB`, `1MiB`, `1.5GiB`. Decimal units (`KB`, `MB`, `GB`) are refused on
    /// purpose: `1GB` is ambiguous (10^9 or 2^30) and mistakes here size a disk buffer.
    public static func parse(_ text: String) -> Result<Int, ConfigProblem> {
        let s = text.trimmed(.whitespaces)
        let digits = s.prefix { ("0"..."9").contains($0) || $0 == "." }
        let unit = s.dropFirst(digits.count).trimmed(.whitespaces)
        guard let number = Double(digits), number.isFinite, number >= 0 else {
            return .failure(ConfigProblem("invalid size \"\(text)\": use a number of bytes or a binary unit, such as 512KiB, 64MiB or 1GiB"))
        }
        let multipliers: [String: Double] = ["": 1, "B": 1, "KiB": 1024, "MiB": 1_048_576, "GiB": 1_073_741_824,
                                             "TiB": 1_099_511_627_776]
        guard let m = multipliers[unit] else {
            let fix = ["K": "KiB", "KB": "KiB", "k": "KiB", "kB": "KiB", "M": "MiB", "MB": "MiB", "G": "GiB",
                       "GB": "GiB", "T": "TiB", "TB": "TiB"][unit]
            let hint = fix.map { "; did you mean \(digits)\($0)?" } ?? "; use B, KiB, MiB, GiB or TiB"
            return .failure(ConfigProblem("invalid size \"\(text)\": unknown unit \"\(unit)\"\(hint) (sizes are binary: 1KiB = 1024 bytes)"))
        }
        // Compared as a Double before any conversion: Int(x) traps when x does not fit.
        let bytes = number * m
        guard bytes <= Double(largest) else {
            return .failure(ConfigProblem("size \"\(text)\" is too large"))
        }
        return .success(Int(bytes))
    }

    public static func format(_ n: Int) -> String {
        for (unit, m) in [("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] where n >= m && n % m == 0 {
            return "\(n / m)\(unit)"
        }
        return "\(n)B"
    }
}

public enum DurationText {
    /// Seconds from `250ms`, `1s`, `1.5s`, `5m`, `1h`, `1d`, or a plain number of seconds; nil when
    /// not a duration (or not a finite one).
    public static func parse(_ text: String) -> Double? {
        let s = text.trimmed(.whitespaces)
        let digits = s.prefix { ("0"..."9").contains($0) || $0 == "." }
        guard let n = Double(digits), n.isFinite, n >= 0 else { return nil }
        switch s.dropFirst(digits.count) {
        case "": return n
        case "ms": return n / 1000
        case "s": return n
        case "m": return n * 60
        case "h": return n * 3600
        case "d": return n * 86_400
        default: return nil
        }
    }

    /// The shortest exact text for a number of seconds (`250ms`, `5s`, `10m`, `7d`).
    public static func format(_ secs: Double) -> String {
        if secs == 0 { return "0s" }
        for (unit, m) in [("d", 86_400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0)] where secs >= m && secs.truncatingRemainder(dividingBy: m) == 0 {
            return "\(Int(secs / m))\(unit)"
        }
        let ms = secs * 1000
        if ms == ms.rounded() { return "\(Int(ms))ms" }
        return "\(secs)s"
    }
}

/// Makes text from a config file safe to print on one line: control characters, invalid bytes and
/// other non-printable characters become escapes, so a message can neither break the
/// `FILE:LINE:COLUMN: message` format nor write terminal control sequences.
public func printable(_ s: String) -> String {
    var out = ""
    out.reserveCapacity(s.utf8.count)
    for u in s.unicodeScalars {
        switch u.value {
        case 0x0A: out += "\\n"
        case 0x0D: out += "\\r"
        case 0x09: out += "\\t"
        case 0..<0x20, 0x7F..<0xA0, 0x2028, 0x2029, 0xFEFF, 0xFFFD, 0x202A...0x202E, 0x2066...0x2069:
            out += "\\u{\(String(u.value, radix: 16))}"
        default: out.unicodeScalars.append(u)
        }
    }
    return out
}

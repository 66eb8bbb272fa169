#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A pattern matched against value bytes (grep, multiline `custom`): found anywhere unless anchored.
///
/// Patterns that are literal text, optionally anchored and separated by `|` (`^ERROR`, `debug|trace`,
/// `GET /health$`), are matched on the bytes directly (memchr/memcmp, no allocation). Anything else
/// goes to Swift `Regex`, which needs a `String`, so it costs a decode (and an allocation for values
/// over 15 bytes) plus the regex engine, about a microsecond per value.
public struct ValuePattern: Sendable, CustomStringConvertible {
    struct Literal: Sendable {
        var bytes: [UInt8]
        var anchoredStart: Bool
        var anchoredEnd: Bool
    }
    enum Impl: @unchecked Sendable {
        case literals([Literal])
        // Regex is immutable once built; matching does not mutate it, so sharing it between threads is safe.
        case regex(Regex<AnyRegexOutput>)
    }
    let impl: Impl
    public let description: String

    public init(_ pattern: String) throws {
        description = pattern
        if let lits = ValuePattern.literals(pattern) {
            impl = .literals(lits)
        } else {
            // Scalar semantics: byte-ish matching as users expect from grep, and faster than
            // the default grapheme-cluster semantics.
            impl = .regex(try Regex(pattern).matchingSemantics(.unicodeScalar))
        }
    }

    /// Whether the pattern is matched without the regex engine.
    public var isLiteral: Bool {
        if case .literals = impl { return true }
        return false
    }

    public func matches(_ value: UnsafeRawBufferPointer) -> Bool {
        switch impl {
        case .literals(let lits):
            for l in lits where ValuePattern.find(l, in: value) { return true }
            return false
        case .regex(let re):
            let s = String(decoding: value, as: UTF8.self)
            return (try? re.firstMatch(in: s)) != nil
        }
    }

    public func matches(_ value: [UInt8]) -> Bool { value.withUnsafeBytes { matches($0) } }

    /// Splits `^lit$|lit2` into literals; nil when the pattern uses any other regex syntax.
    static func literals(_ pattern: String) -> [Literal]? {
        var out: [Literal] = []
        var cur = Literal(bytes: [], anchoredStart: false, anchoredEnd: false)
        let b = Array(pattern.utf8)
        var i = 0
        while i <= b.count {
            if i == b.count || b[i] == UInt8(ascii: "|") {
                // An empty alternative matches everything: leave that to the regex engine.
                if cur.bytes.isEmpty && !(cur.anchoredStart && cur.anchoredEnd) { return nil }
                out.append(cur)
                cur = Literal(bytes: [], anchoredStart: false, anchoredEnd: false)
                i += 1
                continue
            }
            let c = b[i]
            let atStart = i == 0 || b[i - 1] == UInt8(ascii: "|")
            let atEnd = i + 1 == b.count || b[i + 1] == UInt8(ascii: "|")
            switch c {
            case UInt8(ascii: "^") where atStart && cur.bytes.isEmpty && !cur.anchoredStart:
                cur.anchoredStart = true
            case UInt8(ascii: "$") where atEnd:
                cur.anchoredEnd = true
            case UInt8(ascii: "\\"):
                // `\.` and other escaped punctuation are literal; `\d`, `\s`, `\b`… are classes.
                guard i + 1 < b.count else { return nil }
                let e = b[i + 1]
                let isAlnum = (e >= 0x30 && e <= 0x39) || ((e | 0x20) >= 0x61 && (e | 0x20) <= 0x7A)
                if isAlnum || e >= 0x80 { return nil }
                cur.bytes.append(e)
                i += 1
            case UInt8(ascii: "^"), UInt8(ascii: "$"), UInt8(ascii: "."), UInt8(ascii: "*"), UInt8(ascii: "+"),
                 UInt8(ascii: "?"), UInt8(ascii: "("), UInt8(ascii: ")"), UInt8(ascii: "["), UInt8(ascii: "]"),
                 UInt8(ascii: "{"), UInt8(ascii: "}"):
                return nil
            default:
                cur.bytes.append(c)
            }
            i += 1
        }
        return out
    }

    static func find(_ l: Literal, in v: UnsafeRawBufferPointer) -> Bool {
        let m = l.bytes.count
        let n = v.count
        if m > n { return false }
        guard let base = v.baseAddress else { return m == 0 && (!l.anchoredStart || !l.anchoredEnd || n == 0) }
        return l.bytes.withUnsafeBytes { needle -> Bool in
            guard let nb = needle.baseAddress else {
                // Empty literal: `^$` matches only the empty value.
                return !(l.anchoredStart && l.anchoredEnd) || n == 0
            }
            if l.anchoredStart && l.anchoredEnd { return m == n && memcmp(base, nb, m) == 0 }
            if l.anchoredStart { return memcmp(base, nb, m) == 0 }
            if l.anchoredEnd { return memcmp(base + (n - m), nb, m) == 0 }
            let first = needle[0]
            var i = 0
            while i <= n - m {
                guard let hit = memchr(base + i, Int32(first), n - m - i + 1) else { return false }
                let at = base.distance(to: UnsafeRawPointer(hit))
                if memcmp(base + at, nb, m) == 0 { return true }
                i = at + 1
            }
            return false
        }
    }
}

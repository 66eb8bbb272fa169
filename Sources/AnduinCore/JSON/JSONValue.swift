#if canImport(Glibc)
import Glibc
#endif

/// A parsed JSON document, for the few places that need a tree (Kubernetes list and watch objects):
/// built on `JSONScan`'s string and whitespace primitives, so the project has one JSON reader.
///
/// Not for the hot path: a record's JSON is lifted as bytes by `JSONScan.liftObject`. Numbers keep
/// their text (`.number("1.5e3")`), read on demand; objects keep their member order (duplicate keys:
/// the first wins on lookup). Nesting deeper than `JSONScan.maxDepth` is refused, never a stack overflow.
public indirect enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case number(String)
    case string(String)
    case array([JSONValue])
    case object([(key: String, value: JSONValue)])

    /// Why a text is not JSON, with the byte offset where reading stopped.
    public struct ParseError: Error, Sendable, CustomStringConvertible {
        public let offset: Int
        public let reason: String
        public var description: String { "\(reason) at byte \(offset)" }
    }

    /// Parses one JSON value filling `bytes` (whitespace around it allowed).
    public static func parse<C: Collection<UInt8>>(_ bytes: C) throws(ParseError) -> JSONValue {
        let result: Result<JSONValue, ParseError> = bytes.withContiguousStorageIfAvailable { parse(UnsafeRawBufferPointer($0)) }
            ?? Array(bytes).withUnsafeBytes { parse($0) }
        return try result.get()
    }

    private static func parse(_ buffer: UnsafeRawBufferPointer) -> Result<JSONValue, ParseError> {
        guard let p = buffer.baseAddress?.assumingMemoryBound(to: UInt8.self) else {
            return .failure(ParseError(offset: 0, reason: "empty document"))
        }
        var reader = Reader(p: p, n: buffer.count)
        do throws(ParseError) {
            let v = try reader.value(depth: 0)
            reader.i = JSONScan.skipWS(p, reader.i, reader.n)
            guard reader.i == reader.n else { throw reader.fail("trailing bytes after the value") }
            return .success(v)
        } catch {
            return .failure(error)
        }
    }

    // MARK: access

    /// The member `key` of an object (nil for anything else, or when absent).
    public subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        return members.first { $0.key == key }?.value
    }

    public var string: String? { if case .string(let s) = self { return s } else { return nil } }
    public var bool: Bool? { if case .bool(let b) = self { return b } else { return nil } }
    public var array: [JSONValue]? { if case .array(let a) = self { return a } else { return nil } }
    public var members: [(key: String, value: JSONValue)]? { if case .object(let m) = self { return m } else { return nil } }
    /// An integral number (e.g. a status `code`), nil when not one.
    public var int: Int? { if case .number(let t) = self { return Int(t) } else { return nil } }

    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case (.bool(let x), .bool(let y)): return x == y
        case (.number(let x), .number(let y)): return x == y
        case (.string(let x), .string(let y)): return x == y
        case (.array(let x), .array(let y)): return x == y
        case (.object(let x), .object(let y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        default: return false
        }
    }

    // MARK: reading

    private struct Reader {
        let p: UnsafePointer<UInt8>
        let n: Int
        var i = 0

        func fail(_ reason: String) -> ParseError { ParseError(offset: i, reason: reason) }

        mutating func value(depth: Int) throws(ParseError) -> JSONValue {
            guard depth < JSONScan.maxDepth else { throw fail("nested deeper than \(JSONScan.maxDepth)") }
            i = JSONScan.skipWS(p, i, n)
            guard i < n else { throw fail("unexpected end") }
            switch p[i] {
            case 0x7B: return try object(depth: depth)
            case 0x5B: return try array(depth: depth)
            case 0x22: return .string(try string())
            case 0x74: try literal("true"); return .bool(true)
            case 0x66: try literal("false"); return .bool(false)
            case 0x6E: try literal("null"); return .null
            default: return try number()
            }
        }

        mutating func object(depth: Int) throws(ParseError) -> JSONValue {
            i += 1
            var members: [(key: String, value: JSONValue)] = []
            i = JSONScan.skipWS(p, i, n)
            if i < n && p[i] == 0x7D {
                i += 1
                return .object(members)
            }
            while true {
                i = JSONScan.skipWS(p, i, n)
                guard i < n, p[i] == 0x22 else { throw fail("expected a member name") }
                let key = try string()
                i = JSONScan.skipWS(p, i, n)
                guard i < n, p[i] == 0x3A else { throw fail("expected ':'") }
                i += 1
                members.append((key, try value(depth: depth + 1)))
                i = JSONScan.skipWS(p, i, n)
                guard i < n else { throw fail("unterminated object") }
                if p[i] == 0x2C { i += 1; continue }
                guard p[i] == 0x7D else { throw fail("expected ',' or '}'") }
                i += 1
                return .object(members)
            }
        }

        mutating func array(depth: Int) throws(ParseError) -> JSONValue {
            i += 1
            var items: [JSONValue] = []
            i = JSONScan.skipWS(p, i, n)
            if i < n && p[i] == 0x5D {
                i += 1
                return .array(items)
            }
            while true {
                items.append(try value(depth: depth + 1))
                i = JSONScan.skipWS(p, i, n)
                guard i < n else { throw fail("unterminated array") }
                if p[i] == 0x2C { i += 1; continue }
                guard p[i] == 0x5D else { throw fail("expected ',' or ']'") }
                i += 1
                return .array(items)
            }
        }

        mutating func string() throws(ParseError) -> String {
            i += 1
            var out: [UInt8] = []
            guard JSONScan.appendUnescaped(p, &i, n, &out) else { throw fail("unterminated string or bad escape") }
            return String(decoding: out, as: UTF8.self)
        }

        mutating func literal(_ word: StaticString) throws(ParseError) {
            let len = word.utf8CodeUnitCount
            guard n - i >= len, memcmp(p + i, word.utf8Start, len) == 0 else { throw fail("invalid literal") }
            i += len
        }

        mutating func number() throws(ParseError) -> JSONValue {
            let start = i
            while i < n {
                let c = p[i]
                guard (c >= 0x30 && c <= 0x39) || c == 0x2D || c == 0x2B || c == 0x2E || c == 0x65 || c == 0x45 else { break }
                i += 1
            }
            guard i > start else { throw fail("unexpected byte") }
            let text = String(decoding: UnsafeRawBufferPointer(start: p + start, count: i - start), as: UTF8.self)
            guard Double(text) != nil else { throw ParseError(offset: start, reason: "invalid number") }
            return .number(text)
        }
    }
}

import AnduinCore

// The CLI's view of JSON it reads back (`status`, `test`): dictionaries and arrays of plain values,
// built from AnduinCore's JSONValue (full Foundation's JSONSerialization is not linked).

/// A JSON number as its text.
struct JSONNumber: Sendable {
    let text: String
    /// The integer the number truncates to, saturated; 0 when it is not a finite number.
    var intValue: Int {
        if let i = Int(text) { return i }
        guard let d = Double(text), d.isFinite else { return 0 }
        return Int(exactly: d.rounded(.towardZero)) ?? (d < 0 ? Int.min : Int.max)
    }
}

/// JSON's `null`.
struct JSONNull: Sendable {}

enum JSONAny {
    /// Objects become `[String: Any]` (the last of repeated keys wins), arrays `[Any]`, strings
    /// `String`, booleans `Bool`, numbers `JSONNumber`, null `JSONNull`.
    static func value(_ v: JSONValue) -> Any {
        switch v {
        case .null: return JSONNull()
        case .bool(let b): return b
        case .number(let t): return JSONNumber(text: t)
        case .string(let s): return s
        case .array(let a): return a.map(value)
        case .object(let members):
            var out: [String: Any] = [:]
            for m in members { out[m.key] = value(m.value) }
            return out
        }
    }

    /// The object `bytes` hold, or nil when they are not JSON or not an object.
    static func object(_ bytes: [UInt8]) -> [String: Any]? {
        guard let v = try? JSONValue.parse(bytes) else { return nil }
        return value(v) as? [String: Any]
    }

    /// Compact JSON text with object keys sorted, slashes not escaped.
    static func text(_ v: Any) -> String {
        var w = JSONWriter()
        write(v, to: &w)
        return String(decoding: w.bytes, as: UTF8.self)
    }

    private static func write(_ v: Any, to w: inout JSONWriter) {
        switch v {
        case let s as String: w.writeString(s)
        case let b as Bool: w.writeRaw(b ? "true" : "false")
        case let n as JSONNumber: w.writeRaw(Array(n.text.utf8))
        case let a as [Any]:
            w.writeByte(UInt8(ascii: "["))
            for (i, e) in a.enumerated() {
                if i > 0 { w.writeByte(UInt8(ascii: ",")) }
                write(e, to: &w)
            }
            w.writeByte(UInt8(ascii: "]"))
        case let o as [String: Any]:
            w.writeByte(UInt8(ascii: "{"))
            for (i, k) in o.keys.sorted().enumerated() {
                if i > 0 { w.writeByte(UInt8(ascii: ",")) }
                w.writeString(k)
                w.writeByte(UInt8(ascii: ":"))
                if let e = o[k] { write(e, to: &w) }
            }
            w.writeByte(UInt8(ascii: "}"))
        default: w.writeRaw("null")
        }
    }
}

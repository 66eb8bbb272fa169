#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A path to one value of a record, as filters name it: `level`, `kubernetes.labels.app`, `message`,
/// `stream`, `log.file.path`.
///
/// Syntax: keys separated by dots. A key that contains dots (Kubernetes labels such as
/// `app.kubernetes.io/name`) is written in brackets and quotes, `kubernetes.labels["app.kubernetes.io/name"]`
/// (single quotes work too), or with escaped dots, `kubernetes.labels.app\.kubernetes\.io/name`.
/// Inside quotes and in bare keys a backslash takes the next character literally.
///
/// Reading resolves, in order: the agent's own values (`message` unless lifted, `stream`,
/// `@timestamp`, `log.file.path`, `log.offset`, `event.id`), then the record's `fields`, then the
/// batch's `sharedFields`.
public struct FieldPath: Sendable, Hashable, CustomStringConvertible {
    /// What the path names.
    public enum Kind: Sendable, Hashable {
        /// The message; for a record whose message was lifted, a `message` member of its fields.
        case message
        case stream, timestamp, filePath, offset, eventID
        /// A member of `fields` or `sharedFields`.
        case field
    }

    public let kind: Kind
    /// Decoded keys, outermost first.
    public let keys: [[UInt8]]
    /// `[keys[0]]`, built once: lookups of the top-level key then allocate nothing.
    let topKey: [[UInt8]]
    /// The path as written in the config.
    public let description: String

    /// Parses `text`; the problem says what is wrong in words a config author can act on.
    public static func parse(_ text: String) -> Result<FieldPath, ConfigProblem> {
        var keys: [[UInt8]] = []
        let b = Array(text.utf8)
        var i = 0
        var cur: [UInt8] = []
        // True right after a `]`, where only `.`, `[` or the end may follow.
        var afterBracket = false
        func fail(_ why: String) -> Result<FieldPath, ConfigProblem> {
            .failure(ConfigProblem("invalid field path \"\(text)\": \(why)"))
        }
        if b.isEmpty { return fail("it is empty") }
        while i < b.count {
            let c = b[i]
            if afterBracket && c != UInt8(ascii: ".") && c != UInt8(ascii: "[") {
                return fail("expected . or [ after ]")
            }
            switch c {
            case UInt8(ascii: "."):
                if afterBracket {
                    afterBracket = false
                } else {
                    if cur.isEmpty { return fail("empty key (two dots, or a leading or trailing dot)") }
                    keys.append(cur)
                    cur = []
                }
                i += 1
                if i == b.count { return fail("empty key (two dots, or a leading or trailing dot)") }
            case UInt8(ascii: "["):
                if !cur.isEmpty {
                    keys.append(cur)
                    cur = []
                }
                guard i + 1 < b.count, b[i + 1] == UInt8(ascii: "\"") || b[i + 1] == UInt8(ascii: "'") else {
                    return fail("write a bracketed key in quotes, such as labels[\"app.kubernetes.io/name\"]")
                }
                let quote = b[i + 1]
                i += 2
                var key: [UInt8] = []
                var closed = false
                while i < b.count {
                    if b[i] == UInt8(ascii: "\\"), i + 1 < b.count {
                        key.append(b[i + 1])
                        i += 2
                        continue
                    }
                    if b[i] == quote { closed = true; break }
                    key.append(b[i])
                    i += 1
                }
                guard closed, i + 1 < b.count, b[i + 1] == UInt8(ascii: "]") else {
                    return fail("unterminated [\"...\"] key")
                }
                if key.isEmpty { return fail("empty key in brackets") }
                keys.append(key)
                i += 2
                afterBracket = true
            case UInt8(ascii: "\\"):
                guard i + 1 < b.count else { return fail("trailing backslash") }
                cur.append(b[i + 1])
                i += 2
            default:
                cur.append(c)
                i += 1
            }
        }
        if !afterBracket {
            if cur.isEmpty { return fail("empty key") }
            keys.append(cur)
        }
        return .success(FieldPath(keys: keys, text: text))
    }

    /// A path from already split keys (for code; configs use `parse`).
    public init(keys: [[UInt8]], text: String? = nil) {
        self.keys = keys
        self.topKey = keys.isEmpty ? [] : [keys[0]]
        self.description = text ?? keys.map { String(decoding: $0, as: UTF8.self) }.joined(separator: ".")
        func eq(_ k: [[UInt8]], _ s: [String]) -> Bool { k.count == s.count && zip(k, s).allSatisfy { $0 == Array($1.utf8) } }
        if eq(keys, ["message"]) { kind = .message }
        else if eq(keys, ["stream"]) { kind = .stream }
        else if eq(keys, ["@timestamp"]) { kind = .timestamp }
        else if eq(keys, ["log", "file", "path"]) { kind = .filePath }
        else if eq(keys, ["log", "offset"]) { kind = .offset }
        else if eq(keys, ["event", "id"]) { kind = .eventID }
        else { kind = .field }
    }

    /// Top-level names the record encoder writes itself: a filter may read them but not write
    /// under them (the document would get duplicate keys).
    public static let agentKeys: [[UInt8]] = ["@timestamp", "stream", "log", "event"].map { Array($0.utf8) }

    /// Whether a filter may write at this path (`message` and fields, not the agent's own values).
    public var isWritable: Bool {
        guard let top = keys.first else { return false }
        return kind == .message || !FieldPath.agentKeys.contains(top)
    }

    // MARK: reading

    /// Calls `body` with the value's bytes, or nil when the record has no such value. Strings are
    /// unescaped; numbers, booleans and null are their JSON text; objects and arrays their compact
    /// JSON. Strings without escapes (the usual case) are passed straight from the arena, no copy;
    /// `scratch` holds the others.
    public func withValue<R>(_ batch: RecordBatch, _ index: Int, scratch: inout [UInt8],
                             _ body: (UnsafeRawBufferPointer?) -> R) -> R {
        let r = batch.records[index]
        switch kind {
        case .message where !r.flags.contains(.messageLifted):
            guard r.message.lowerBound >= 0, r.message.upperBound <= batch.bytes.count else { return body(nil) }
            return batch.bytes.withUnsafeBytes { body(UnsafeRawBufferPointer(rebasing: $0[r.message])) }
        case .message, .field:
            return withMember(batch, r) { raw in
                guard let raw else { return body(nil) }
                return FieldPath.withDecoded(raw, scratch: &scratch, body)
            }
        case .stream:
            if r.stream == .none { return body(nil) }
            return r.stream.jsonName.withUTF8Buffer { body(UnsafeRawBufferPointer($0)) }
        default:
            scratch.removeAll(keepingCapacity: true)
            appendAgentValue(batch, r, text: true, to: &scratch)
            return scratch.withUnsafeBytes { body($0) }
        }
    }

    /// The value as a `[UInt8]` (tests, config-time checks, per-batch values; not for per-record use).
    public func value(_ batch: RecordBatch, _ index: Int) -> [UInt8]? {
        var scratch: [UInt8] = []
        return withValue(batch, index, scratch: &scratch) { $0.map { Array($0) } }
    }

    /// Appends the value as JSON text (strings quoted) to `out`; false, `out` unchanged, when absent.
    @discardableResult
    public func appendJSON(_ batch: RecordBatch, _ index: Int, to out: inout [UInt8]) -> Bool {
        let r = batch.records[index]
        switch kind {
        case .message where !r.flags.contains(.messageLifted):
            guard r.message.lowerBound >= 0, r.message.upperBound <= batch.bytes.count else { return false }
            out.append(UInt8(ascii: "\""))
            batch.bytes.withUnsafeBytes { JSONWriter.appendEscaped(UnsafeRawBufferPointer(rebasing: $0[r.message]), to: &out) }
            out.append(UInt8(ascii: "\""))
            return true
        case .message, .field:
            return withMember(batch, r) { raw in
                guard let raw else { return false }
                out.append(contentsOf: raw)
                return true
            }
        case .stream:
            if r.stream == .none { return false }
            out.append(UInt8(ascii: "\""))
            r.stream.jsonName.withUTF8Buffer { out.append(contentsOf: $0) }
            out.append(UInt8(ascii: "\""))
            return true
        default:
            appendAgentValue(batch, r, text: false, to: &out)
            return true
        }
    }

    /// Whether a `.field` path's top-level key is in the record's own fields. When it is not, the
    /// value comes from the shared fields and is the same for the whole batch: callers that read it
    /// per record can read it once (`withSharedValue`).
    public func inRecordFields(_ batch: RecordBatch, _ index: Int) -> Bool {
        !topKey.isEmpty && FieldPath.hasMember(batch.bytes, batch.records[index].fields, topKey)
    }

    /// `withValue` for the batch's shared fields only.
    public func withSharedValue<R>(_ batch: RecordBatch, scratch: inout [UInt8], _ body: (UnsafeRawBufferPointer?) -> R) -> R {
        batch.sharedFields.withUnsafeBytes { shared in
            guard !shared.isEmpty, let vr = JSONScan.lookup(shared, path: keys) else { return body(nil) }
            return FieldPath.withDecoded(UnsafeRawBufferPointer(rebasing: shared[vr]), scratch: &scratch, body)
        }
    }

    /// The raw JSON of the member at `keys`: the record's fields first, then the shared fields.
    func withMember<R>(_ batch: RecordBatch, _ r: Record, _ body: (UnsafeRawBufferPointer?) -> R) -> R {
        let own: R? = batch.bytes.withUnsafeBytes { arena -> R? in
            guard !r.fields.isEmpty, r.fields.lowerBound >= 0, r.fields.upperBound <= arena.count else { return nil }
            let members = UnsafeRawBufferPointer(rebasing: arena[r.fields])
            guard let vr = JSONScan.lookup(members, path: keys) else { return nil }
            return body(UnsafeRawBufferPointer(rebasing: members[vr]))
        }
        if let own { return own }
        return batch.sharedFields.withUnsafeBytes { shared in
            guard !shared.isEmpty, let vr = JSONScan.lookup(shared, path: keys) else { return body(nil) }
            return body(UnsafeRawBufferPointer(rebasing: shared[vr]))
        }
    }

    /// Whether the members in `bytes[range]` have a value at `keys`.
    public static func hasMember(_ bytes: [UInt8], _ range: Range<Int>, _ keys: [[UInt8]]) -> Bool {
        guard !range.isEmpty, range.lowerBound >= 0, range.upperBound <= bytes.count else { return false }
        return bytes.withUnsafeBytes { JSONScan.lookup(UnsafeRawBufferPointer(rebasing: $0[range]), path: keys) != nil }
    }

    /// Turns a raw JSON value into the bytes a pattern sees: strings decoded, others as they are.
    static func withDecoded<R>(_ raw: UnsafeRawBufferPointer, scratch: inout [UInt8],
                               _ body: (UnsafeRawBufferPointer?) -> R) -> R {
        guard raw.count >= 2, raw[0] == UInt8(ascii: "\""),
              let p = raw.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return body(raw) }
        // No escape before the closing quote: the body is the bytes themselves.
        if JSONScan.findQuoteOrBackslash(p, 1, raw.count) == raw.count - 1 {
            return body(UnsafeRawBufferPointer(rebasing: raw[1..<(raw.count - 1)]))
        }
        scratch.removeAll(keepingCapacity: true)
        var i = 1
        guard JSONScan.appendUnescapedString(raw, from: &i, to: &scratch) else { return body(raw) }
        return scratch.withUnsafeBytes { body($0) }
    }

    /// `@timestamp`, `log.file.path`, `log.offset`, `event.id`: as text, or as JSON when `text` is false.
    func appendAgentValue(_ batch: RecordBatch, _ r: Record, text: Bool, to out: inout [UInt8]) {
        let quoted = !text && kind != .offset
        if quoted && kind != .filePath { out.append(UInt8(ascii: "\"")) }
        switch kind {
        case .timestamp: Timestamp.appendRFC3339Nano(r.timestamp, to: &out)
        case .offset: JSONWriter.appendInt(r.offset, to: &out)
        case .eventID:
            RecordBatch.appendEventID(sourceID: batch.source.sourceID, offset: r.offset, to: &out)
        case .filePath:
            if quoted { out.append(contentsOf: batch.source.pathJSON) } else { out.append(contentsOf: batch.source.path.utf8) }
        default: break
        }
        if quoted && kind != .filePath { out.append(UInt8(ascii: "\"")) }
    }
}

import AnduinCore
#if canImport(Glibc)
import Glibc
#endif

/// What `types:` converts a logfmt value or a regex capture to.
public enum ValueType: String, Sendable, CaseIterable {
    case string, int, float, bool
}

/// How one captured group is written.
enum FieldKind: Sendable, Equatable {
    case value(ValueType)
    /// klog's level letter: `I` `W` `E` `F` as `info` `warning` `error` `fatal`.
    case klogLevel
    /// klog's message: a structured one (`"msg" key="value" n=3`) is its quoted text, and its pairs
    /// become fields beside it (strings; `types:` does not apply); any other is written as it is.
    case klogMessage
    /// A syslog PRI (0-191) as a number; the next three are derived from it, and absent when it is
    /// not a valid PRI.
    case syslogPriority
    case syslogFacility, syslogSeverity
    /// The severity's name (`error`, `notice`, …) for `log.level`.
    case syslogLevel
}

struct CaptureField: Sendable {
    /// The output key, as UTF-8 (dots are part of the key: `url.original`).
    var key: [UInt8]
    var group: Int
    var kind: FieldKind
}

/// A regex whose named groups become fields (`regex:` or a built-in format).
public struct CaptureFormat: Sendable {
    let regex: CaptureRegex
    let fields: [CaptureField]
    /// A capture that is exactly `-` (the "no value" of access logs and syslog) is left out.
    let dashIsAbsent: Bool

    /// `regex:`: every named group is a field, converted by `types`.
    public init(regex: CaptureRegex, types: [String: ValueType]) {
        self.regex = regex
        fields = regex.names.map { CaptureField(key: Array($0.name.utf8), group: $0.group, kind: .value(types[$0.name] ?? .string)) }
        dashIsAbsent = false
    }

    /// A built-in format: group name -> (field name, kind).
    init(builtIn pattern: String, _ names: [String: (String, FieldKind)]) {
        // The built-in patterns are constants checked by the tests; a failure here is a bug in them.
        guard let regex = try? CaptureRegex(pattern) else { preconditionFailure("built-in pattern does not compile: \(pattern)") }
        self.regex = regex
        var fields: [CaptureField] = []
        for n in regex.names {
            guard let (key, kind) = names[n.name] else { continue }
            fields.append(CaptureField(key: Array(key.utf8), group: n.group, kind: kind))
            if kind == .syslogPriority {
                fields.append(CaptureField(key: Array("log.syslog.facility.code".utf8), group: n.group, kind: .syslogFacility))
                fields.append(CaptureField(key: Array("log.syslog.severity.code".utf8), group: n.group, kind: .syslogSeverity))
                fields.append(CaptureField(key: Array("log.level".utf8), group: n.group, kind: .syslogLevel))
            }
        }
        self.fields = fields
        dashIsAbsent = true
    }
}

/// How a format's fields nest: `http.response.status_code` is written as
/// `"http":{"response":{"status_code":…}}`, as grep, modify and `anduin test` paths read it. A name
/// whose first part is a field the agent writes itself (`log.level` at the root, where the agent
/// writes `log`) stays one dotted key, which Elasticsearch merges into that object.
struct CaptureLayout: Sendable {
    struct Node: Sendable {
        var key: [UInt8]
        /// Index in the format's fields for a value; -1 for an object.
        var field: Int
        var children: [Int]
    }
    /// Parents before their children.
    var nodes: [Node] = []
    var roots: [Int] = []

    // The tree flattened into arrays of plain values, read on every line: indexing them retains
    // nothing (reading a `Node` retained its two arrays, ~15% of the nginx parse in perf).
    /// Per node: the field index, or -1 for an object.
    var field: [Int] = []
    /// Per node: its key as written (raw) and JSON-escaped, as ranges into `keyBytes`.
    var rawKey: [Range<Int>] = []
    var jsonKey: [Range<Int>] = []
    var keyBytes: [UInt8] = []
    /// Per node: its children, a range into `childList`.
    var children: [Range<Int>] = []
    var childList: [Int] = []
    /// Per field: its group and how it is written.
    var groups: [Int] = []
    var kinds: [FieldKind] = []

    init(_ format: CaptureFormat, keepDotted: [[UInt8]]) {
        build(format, keepDotted: keepDotted)
        kinds = format.fields.map(\.kind)
        groups = format.fields.map(\.group)
        for node in nodes {
            field.append(node.field)
            let raw = keyBytes.count
            keyBytes.append(contentsOf: node.key)
            rawKey.append(raw..<keyBytes.count)
            let escaped = keyBytes.count
            node.key.withUnsafeBytes { JSONWriter.appendEscaped($0, to: &keyBytes) }
            jsonKey.append(escaped..<keyBytes.count)
            let first = childList.count
            childList.append(contentsOf: node.children)
            children.append(first..<childList.count)
        }
    }

    private mutating func build(_ format: CaptureFormat, keepDotted: [[UInt8]]) {
        for (fi, f) in format.fields.enumerated() {
            var parts = f.key.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false).map(Array.init)
            if parts.count > 1 && (keepDotted.contains(parts[0]) || parts.contains(where: \.isEmpty)) { parts = [f.key] }
            var level: Int? = nil   // nil: the roots
            for (k, part) in parts.enumerated() {
                let siblings = level.map { nodes[$0].children } ?? roots
                let isLeaf = k == parts.count - 1
                if !isLeaf, let existing = siblings.first(where: { nodes[$0].field < 0 && nodes[$0].key == part }) {
                    level = existing
                    continue
                }
                nodes.append(Node(key: part, field: isLeaf ? fi : -1, children: []))
                let id = nodes.count - 1
                if let level { nodes[level].children.append(id) } else { roots.append(id) }
                level = id
            }
        }
    }
}

/// Per-thread working memory of `Captures.lift`.
struct CaptureScratch {
    var matches: [CaptureRegex.Scratch?]
    var ranges: [Range<Int>?] = []
    var present: [Bool] = []
    init(formats: Int) { matches = Array(repeating: nil, count: formats) }
}

enum Captures {
    static let levelNames: [UInt8: StaticString] = [0x49: "info", 0x57: "warning", 0x45: "error", 0x46: "fatal"]
    static let severityNames: [StaticString] = ["emergency", "alert", "critical", "error", "warning", "notice", "informational", "debug"]

    /// Matches `src` against `format` and appends its captures as members laid out by `layout`;
    /// returns how many top-level members were written, or nil (`out` untouched) when the line does
    /// not match or has no capture to write. `typeErrors` counts values `types:` could not convert
    /// (kept as strings).
    static func lift(_ src: UnsafeRawBufferPointer, format: CaptureFormat, layout: CaptureLayout, match: CaptureRegex.Scratch,
                     ranges: inout [Range<Int>?], present: inout [Bool], into out: inout [UInt8], keys: inout MemberKeys,
                     renameKey: (UnsafeRawBufferPointer) -> Bool, typeErrors: inout Int) -> Int? {
        ranges.removeAll(keepingCapacity: true)
        let matched = format.regex.match(src, match) { group in
            for i in layout.groups.indices {
                var r = group(layout.groups[i])
                if let range = r, format.dashIsAbsent,
                   range.isEmpty || (range.count == 1 && src[range.lowerBound] == UInt8(ascii: "-")) { r = nil }
                let kind = layout.kinds[i]
                if let range = r, kind == .syslogFacility || kind == .syslogSeverity || kind == .syslogLevel,
                   priority(UnsafeRawBufferPointer(rebasing: src[range])) == nil { r = nil }
                ranges.append(r)
            }
        }
        guard matched else { return nil }
        // Which nodes have something to write (children come after their parents).
        present.removeAll(keepingCapacity: true)
        present.append(contentsOf: repeatElement(false, count: layout.field.count))
        for n in layout.field.indices.reversed() {
            let f = layout.field[n]
            if f >= 0 {
                present[n] = ranges[f] != nil
            } else {
                for c in layout.children[n] where present[layout.childList[c]] { present[n] = true; break }
            }
        }
        guard layout.roots.contains(where: { present[$0] }) else { return nil }
        var errors = 0
        let written = writeObject(layout.roots[...], top: true, src, layout, ranges, present, &out, &keys, renameKey, &errors)
        typeErrors += errors
        return written
    }

    static func writeObject(_ members: ArraySlice<Int>, top: Bool, _ src: UnsafeRawBufferPointer,
                            _ layout: CaptureLayout, _ ranges: [Range<Int>?], _ present: [Bool], _ out: inout [UInt8],
                            _ keys: inout MemberKeys, _ renameKey: (UnsafeRawBufferPointer) -> Bool, _ errors: inout Int) -> Int {
        var frame = keys.begin(at: out.count, top: top)
        var written = 0
        for n in members where present[n] {
            member(layout, n, top: top, &out, &frame, &keys, renameKey, &written)
            let fi = layout.field[n]
            guard fi >= 0 else {
                out.append(UInt8(ascii: "{"))
                _ = writeObject(layout.childList[layout.children[n]], top: false, src, layout, ranges, present, &out, &keys, renameKey, &errors)
                out.append(UInt8(ascii: "}"))
                continue
            }
            guard let r = ranges[fi] else { continue }
            let v = UnsafeRawBufferPointer(rebasing: src[r])
            switch layout.kinds[fi] {
            case .value(let type):
                if !writeTyped(v, type, to: &out) { errors += 1 }
            case .klogLevel:
                if let c = v.first, let name = levelNames[c] { writeStatic(name, to: &out) } else { writeString(v, to: &out) }
            case .klogMessage:
                writeKlogMessage(v, top: top, &out, &frame, &keys, renameKey, &written)
            case .syslogPriority:
                if let pri = priority(v) { JSONWriter.appendInt(pri, to: &out) } else { writeString(v, to: &out) }
            case .syslogFacility:
                JSONWriter.appendInt((priority(v) ?? 0) / 8, to: &out)
            case .syslogSeverity:
                JSONWriter.appendInt((priority(v) ?? 0) % 8, to: &out)
            case .syslogLevel:
                writeStatic(severityNames[Int((priority(v) ?? 0) % 8)], to: &out)
            }
        }
        return keys.finish(frame, &out)
    }

    /// Writes node `n`'s `"key":` from the layout's pre-escaped key.
    @inline(__always)
    static func member(_ layout: CaptureLayout, _ n: Int, top: Bool, _ out: inout [UInt8], _ frame: inout MemberKeys.Frame,
                       _ keys: inout MemberKeys, _ renameKey: (UnsafeRawBufferPointer) -> Bool, _ written: inout Int) {
        if written > 0 { out.append(UInt8(ascii: ",")) }
        let start = out.count
        out.append(UInt8(ascii: "\""))
        let renamed = top && layout.keyBytes.withUnsafeBytes { renameKey(UnsafeRawBufferPointer(rebasing: $0[layout.rawKey[n]])) }
        if renamed { out.append(UInt8(ascii: "_")) }
        layout.keyBytes.withUnsafeBytes { out.append(contentsOf: UnsafeRawBufferPointer(rebasing: $0[layout.jsonKey[n]])) }
        keys.note(&frame, member: start, keyEnd: out.count, renamed: renamed, in: &out)
        out.append(UInt8(ascii: "\""))
        out.append(UInt8(ascii: ":"))
        written += 1
    }

    /// Writes the message value (its key is written) and, for a structured message, its pairs.
    static func writeKlogMessage(_ v: UnsafeRawBufferPointer, top: Bool, _ out: inout [UInt8], _ frame: inout MemberKeys.Frame,
                                 _ keys: inout MemberKeys, _ renameKey: (UnsafeRawBufferPointer) -> Bool, _ written: inout Int) {
        var pairs: [LogfmtScratch.Pair] = []
        guard v.count >= 2, v[0] == UInt8(ascii: "\"") else { writeString(v, to: &out); return }
        var j = 1
        while j < v.count, v[j] != UInt8(ascii: "\"") { j += v[j] == UInt8(ascii: "\\") ? 2 : 1 }
        guard j < v.count else { writeString(v, to: &out); return }
        let text = UnsafeRawBufferPointer(rebasing: v[1..<j])
        if j + 1 == v.count {
            out.append(UInt8(ascii: "\""))
            Logfmt.appendUnquoted(text, to: &out)
            out.append(UInt8(ascii: "\""))
            return
        }
        let rest = UnsafeRawBufferPointer(rebasing: v[(j + 1)...])
        guard Logfmt.isSpace(v[j + 1]), Logfmt.tokenize(rest, &pairs) else { writeString(v, to: &out); return }
        out.append(UInt8(ascii: "\""))
        Logfmt.appendUnquoted(text, to: &out)
        out.append(UInt8(ascii: "\""))
        for p in pairs {
            member(Array(UnsafeRawBufferPointer(rebasing: rest[p.key])), top: top, &out, &frame, &keys, renameKey, &written)
            let value = UnsafeRawBufferPointer(rebasing: rest[p.value])
            switch p.kind {
            case .bare: out.append(contentsOf: "true".utf8)
            case .unquoted: writeString(value, to: &out)
            case .quoted:
                out.append(UInt8(ascii: "\""))
                Logfmt.appendUnquoted(value, to: &out)
                out.append(UInt8(ascii: "\""))
            }
        }
    }

    static func priority(_ v: UnsafeRawBufferPointer) -> Int64? {
        guard let pri = smallInt(v), pri >= 0, pri <= 191 else { return nil }
        return pri
    }

    static func writeStatic(_ s: StaticString, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        out.append(contentsOf: UnsafeRawBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
        out.append(UInt8(ascii: "\""))
    }

    /// Writes `"key":` (a comma before all but the first), renamed with `_` when reserved.
    @inline(__always)
    static func member(_ key: [UInt8], top: Bool, _ out: inout [UInt8], _ frame: inout MemberKeys.Frame, _ keys: inout MemberKeys,
                       _ renameKey: (UnsafeRawBufferPointer) -> Bool, _ written: inout Int) {
        if written > 0 { out.append(UInt8(ascii: ",")) }
        let start = out.count
        out.append(UInt8(ascii: "\""))
        let renamed = top && key.withUnsafeBytes { renameKey($0) }
        if renamed { out.append(UInt8(ascii: "_")) }
        key.withUnsafeBytes { JSONWriter.appendEscaped($0, to: &out) }
        keys.note(&frame, member: start, keyEnd: out.count, renamed: renamed, in: &out)
        out.append(UInt8(ascii: "\""))
        out.append(UInt8(ascii: ":"))
        written += 1
    }

    @inline(__always)
    static func writeString(_ v: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        JSONWriter.appendEscaped(v, to: &out)
        out.append(UInt8(ascii: "\""))
    }

    /// Writes `v` as `type`; false (and `v` written as a string) when it is not one.
    static func writeTyped(_ v: UnsafeRawBufferPointer, _ type: ValueType, to out: inout [UInt8]) -> Bool {
        switch type {
        case .string:
            writeString(v, to: &out)
            return true
        case .int:
            if let n = int64(v) { JSONWriter.appendInt(n, to: &out); return true }
        case .float:
            if let d = double(v) {
                // Integral values within 2^53 are written without a fraction (`12`, not `12.0`).
                if d == d.rounded(), abs(d) < 9_007_199_254_740_992 {
                    JSONWriter.appendInt(Int64(d), to: &out)
                } else {
                    out.append(contentsOf: "\(d)".utf8)
                }
                return true
            }
        case .bool:
            switch v.count {
            case 4 where v.elementsEqual("true".utf8) || v.elementsEqual("True".utf8) || v.elementsEqual("TRUE".utf8):
                out.append(contentsOf: "true".utf8); return true
            case 5 where v.elementsEqual("false".utf8) || v.elementsEqual("False".utf8) || v.elementsEqual("FALSE".utf8):
                out.append(contentsOf: "false".utf8); return true
            case 1 where v[0] == UInt8(ascii: "1"):
                out.append(contentsOf: "true".utf8); return true
            case 1 where v[0] == UInt8(ascii: "0"):
                out.append(contentsOf: "false".utf8); return true
            default: break
            }
        }
        writeString(v, to: &out)
        return false
    }

    /// A decimal integer (optional `-` or `+`) that fits Int64; nil otherwise.
    static func int64(_ v: UnsafeRawBufferPointer) -> Int64? {
        var i = 0
        var negative = false
        if i < v.count, v[i] == UInt8(ascii: "-") || v[i] == UInt8(ascii: "+") { negative = v[i] == UInt8(ascii: "-"); i += 1 }
        guard i < v.count, v.count - i <= 20 else { return nil }
        var n: Int64 = 0
        while i < v.count {
            let d = v[i] &- 48
            guard d <= 9 else { return nil }
            let (m, o1) = n.multipliedReportingOverflow(by: 10)
            let (s, o2) = negative ? m.subtractingReportingOverflow(Int64(d)) : m.addingReportingOverflow(Int64(d))
            guard !o1, !o2 else { return nil }
            n = s
            i += 1
        }
        return n
    }

    static func smallInt(_ v: UnsafeRawBufferPointer) -> Int64? {
        guard !v.isEmpty, v.count <= 3 else { return nil }
        return int64(v)
    }

    /// A finite decimal number (`1.5`, `-2`, `3e-4`); nil for anything else (hex, inf and nan too).
    static func double(_ v: UnsafeRawBufferPointer) -> Double? {
        guard !v.isEmpty, v.count < 64 else { return nil }
        for c in v {
            let ok = (c >= 48 && c <= 57) || c == UInt8(ascii: ".") || c == UInt8(ascii: "-") || c == UInt8(ascii: "+")
                || c == UInt8(ascii: "e") || c == UInt8(ascii: "E")
            if !ok { return nil }
        }
        var buf: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)
        return withUnsafeMutableBytes(of: &buf) { b -> Double? in
            guard let base = b.baseAddress else { return nil }
            b.copyMemory(from: v)
            b[v.count] = 0
            let p = base.assumingMemoryBound(to: CChar.self)
            var end: UnsafeMutablePointer<CChar>? = nil
            let d = strtod(p, &end)
            guard let end, end - p == v.count, d.isFinite else { return nil }
            return d
        }
    }
}

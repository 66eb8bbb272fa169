import CYAML
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A YAML node composed from libyaml's events, with the position of its first character.
/// Aliases are resolved to the anchored node (a copy: arrays share their storage).
indirect enum YAMLNode {
    /// `tag`: nil when implicit (a plain scalar without one; resolved by `YAMLTag.resolve`).
    case scalar(String, plain: Bool, tag: String?, line: Int, column: Int)
    case mapping([(key: YAMLNode, value: YAMLNode)], tag: String?, line: Int, column: Int)
    case sequence([YAMLNode], tag: String?, line: Int, column: Int)

    var line: Int {
        switch self {
        case .scalar(_, _, _, let l, _), .mapping(_, _, let l, _), .sequence(_, _, let l, _): return l
        }
    }
    var column: Int {
        switch self {
        case .scalar(_, _, _, _, let c), .mapping(_, _, _, let c), .sequence(_, _, _, let c): return c
        }
    }
}

/// Why a YAML text could not be composed. Lines and columns start at 1 (columns count Unicode scalars).
enum YAMLError: Error {
    /// libyaml's reader: `offset` is the problem's byte offset in the text.
    case reader(problem: String, offset: Int)
    /// libyaml's scanner or parser, or the composer (another document, an undefined alias).
    case syntax(problem: String, line: Int, column: Int, context: (text: String, line: Int, column: Int)?)
    /// A key repeated in one mapping (the least of them, at its first occurrence).
    case duplicateKey(String, line: Int, column: Int)
    case memory
}

/// Composes the single document of a YAML text into nodes, as a YAML 1.1 composer does: one
/// document (or none), aliases refer to the last node anchored under their name before them, and a
/// mapping's keys are unique (equal by value and resolved tag).
enum YAMLLoader {
    /// nil for a text with no document.
    static func compose(_ yaml: String) throws(YAMLError) -> YAMLNode? {
        var bytes = Array(yaml.utf8)
        let count = bytes.count
        if bytes.isEmpty { bytes = [0] }  // libyaml wants a non-null input pointer
        let parser = UnsafeMutablePointer<yaml_parser_t>.allocate(capacity: 1)
        parser.initialize(to: yaml_parser_t())
        defer {
            parser.deinitialize(count: 1)
            parser.deallocate()
        }
        guard yaml_parser_initialize(parser) == 1 else { throw .memory }
        defer { yaml_parser_delete(parser) }
        yaml_parser_set_encoding(parser, YAML_UTF8_ENCODING)
        let result: Result<YAMLNode?, YAMLError> = bytes.withUnsafeBufferPointer { buf in
            yaml_parser_set_input_string(parser, buf.baseAddress, count)
            var composer = Composer(parser: parser, yaml: yaml)
            do throws(YAMLError) { return .success(try composer.singleRoot()) } catch { return .failure(error) }
        }
        return try result.get()
    }

    private struct Composer {
        let parser: UnsafeMutablePointer<yaml_parser_t>
        let yaml: String
        var anchors: [String: YAMLNode] = [:]

        init(parser: UnsafeMutablePointer<yaml_parser_t>, yaml: String) {
            self.parser = parser
            self.yaml = yaml
        }

        /// The next event; the caller deletes it (`Event` does on deinit).
        mutating func next() throws(YAMLError) -> Event {
            let e = Event()
            guard yaml_parser_parse(parser, &e.event) == 1 else { throw error() }
            return e
        }

        func error() -> YAMLError {
            let p = parser.pointee
            let problem = p.problem.map { String(cString: $0) } ?? "unknown problem"
            switch p.error {
            case YAML_MEMORY_ERROR: return .memory
            case YAML_READER_ERROR: return .reader(problem: problem, offset: Int(clamping: p.problem_offset))
            default:
                let context = p.context.map {
                    (text: String(cString: $0), line: Int(clamping: p.context_mark.line) &+ 1,
                     column: Int(clamping: p.context_mark.column) &+ 1)
                }
                return .syntax(problem: problem, line: Int(clamping: p.problem_mark.line) &+ 1,
                               column: Int(clamping: p.problem_mark.column) &+ 1, context: context)
            }
        }

        mutating func singleRoot() throws(YAMLError) -> YAMLNode? {
            _ = try next()  // STREAM-START
            guard try next().event.type != YAML_STREAM_END_EVENT else { return nil }  // DOCUMENT-START
            let node = try load(try next())
            _ = try next()  // DOCUMENT-END
            let after = try next()
            if after.event.type != YAML_STREAM_END_EVENT {
                throw .syntax(problem: "but found another document", line: after.line, column: after.column,
                              context: (text: "expected a single document in the stream", line: 1, column: 1))
            }
            return node
        }

        mutating func load(_ e: Event) throws(YAMLError) -> YAMLNode {
            switch e.event.type {
            case YAML_ALIAS_EVENT:
                guard let node = anchors[cString(e.event.data.alias.anchor) ?? ""] else {
                    throw .syntax(problem: "found undefined alias", line: e.line, column: e.column, context: nil)
                }
                return node
            case YAML_SCALAR_EVENT:
                let s = e.event.data.scalar
                let value = s.value.map { String(decoding: UnsafeBufferPointer(start: $0, count: s.length), as: UTF8.self) } ?? ""
                let tag = s.quoted_implicit == 1 ? YAMLTag.str : cString(s.tag)
                let node = YAMLNode.scalar(value, plain: s.style == YAML_PLAIN_SCALAR_STYLE, tag: tag,
                                           line: e.line, column: e.column)
                register(cString(s.anchor), node)
                return node
            case YAML_SEQUENCE_START_EVENT:
                var items: [YAMLNode] = []
                var ev = try next()
                while ev.event.type != YAML_SEQUENCE_END_EVENT {
                    items.append(try load(ev))
                    ev = try next()
                }
                let start = e.event.data.sequence_start
                let node = YAMLNode.sequence(items, tag: start.implicit != 0 ? nil : cString(start.tag),
                                             line: e.line, column: e.column)
                register(cString(start.anchor), node)
                return node
            case YAML_MAPPING_START_EVENT:
                var pairs: [(key: YAMLNode, value: YAMLNode)] = []
                var ev = try next()
                while ev.event.type != YAML_MAPPING_END_EVENT {
                    let key = try load(ev)
                    let value = try load(try next())
                    pairs.append((key, value))
                    ev = try next()
                }
                try YAMLTag.checkDuplicates(pairs.map(\.key))
                let start = e.event.data.mapping_start
                let node = YAMLNode.mapping(pairs, tag: start.implicit != 0 ? nil : cString(start.tag),
                                            line: e.line, column: e.column)
                register(cString(start.anchor), node)
                return node
            default:
                // libyaml's parser gives a node event here; anything else is a libyaml bug.
                throw .syntax(problem: "unexpected event", line: e.line, column: e.column, context: nil)
            }
        }

        mutating func register(_ anchor: String?, _ node: YAMLNode) {
            if let anchor { anchors[anchor] = node }
        }
    }

    private final class Event {
        var event = yaml_event_t()
        deinit { yaml_event_delete(&event) }
        var line: Int { Int(clamping: event.start_mark.line) &+ 1 }
        var column: Int { Int(clamping: event.start_mark.column) &+ 1 }
    }

    private static func cString(_ p: UnsafeMutablePointer<yaml_char_t>?) -> String? {
        guard let p else { return nil }
        return String(decoding: UnsafeBufferPointer(start: p, count: strlen(p)), as: UTF8.self)
    }
}

/// Tags as a YAML 1.1 composer resolves them, for comparing mapping keys: `1` and `"1"` are
/// different keys (an int and a string), `a` and `"a"` the same.
enum YAMLTag {
    static let str = "tag:yaml.org,2002:str"

    static func resolved(_ node: YAMLNode) -> String {
        switch node {
        case .scalar(let s, _, let tag, _, _):
            guard let tag else { return resolve(plain: s) }
            return tag == "!" ? str : tag
        case .mapping(_, let tag, _, _): return tag == nil || tag == "!" ? "tag:yaml.org,2002:map" : tag ?? ""
        case .sequence(_, let tag, _, _): return tag == nil || tag == "!" ? "tag:yaml.org,2002:seq" : tag ?? ""
        }
    }

    static func equal(_ a: YAMLNode, _ b: YAMLNode) -> Bool {
        switch (a, b) {
        case (.scalar(let x, _, _, _, _), .scalar(let y, _, _, _, _)):
            return x == y && resolved(a) == resolved(b)
        case (.mapping(let x, _, _, _), .mapping(let y, _, _, _)):
            return x.count == y.count && resolved(a) == resolved(b)
                && zip(x, y).allSatisfy { equal($0.key, $1.key) && equal($0.value, $1.value) }
        case (.sequence(let x, _, _, _), .sequence(let y, _, _, _)):
            return x.count == y.count && resolved(a) == resolved(b) && zip(x, y).allSatisfy { equal($0, $1) }
        default:
            return false
        }
    }

    /// Throws for the least repeated key (by text), at its first occurrence.
    static func checkDuplicates(_ keys: [YAMLNode]) throws(YAMLError) {
        var scalars: [String: [String: Int]] = [:]  // text -> resolved tag -> occurrences
        var firstAt: [String: [String: YAMLNode]] = [:]
        var others: [YAMLNode] = []
        var repeated: [YAMLNode] = []
        for k in keys {
            if case .scalar(let s, _, _, _, _) = k {
                let t = resolved(k)
                let n = (scalars[s]?[t] ?? 0) &+ 1
                scalars[s, default: [:]][t] = n
                if n == 1 { firstAt[s, default: [:]][t] = k } else if n == 2, let first = firstAt[s]?[t] { repeated.append(first) }
            } else {
                if let first = others.first(where: { equal($0, k) }) {
                    if !repeated.contains(where: { equal($0, first) }) { repeated.append(first) }
                } else {
                    others.append(k)
                }
            }
        }
        guard !repeated.isEmpty else { return }
        let texts = repeated.compactMap { node -> (String, YAMLNode)? in
            if case .scalar(let s, _, _, _, _) = node { return (s, node) } else { return nil }
        }
        let least = texts.min { $0.0 < $1.0 }
        let node = least?.1 ?? repeated[0]
        throw .duplicateKey(least?.0 ?? "<uncovertable>", line: node.line, column: node.column)
    }

    /// The tag of an untagged plain scalar: bool, int, float, merge, null, timestamp, value, else str.
    static func resolve(plain s: String) -> String {
        let b = Array(s.utf8)
        if ["yes", "Yes", "YES", "no", "No", "NO", "true", "True", "TRUE", "false", "False", "FALSE",
            "on", "On", "ON", "off", "Off", "OFF"].contains(s) { return "tag:yaml.org,2002:bool" }
        if isInt(b) { return "tag:yaml.org,2002:int" }
        if isFloat(b) { return "tag:yaml.org,2002:float" }
        if s == "<<" { return "tag:yaml.org,2002:merge" }
        if ["~", "null", "Null", "NULL", ""].contains(s) { return "tag:yaml.org,2002:null" }
        if isTimestamp(b) { return "tag:yaml.org,2002:timestamp" }
        if s == "=" { return "tag:yaml.org,2002:value" }
        return str
    }

    private static func digit(_ c: UInt8) -> Bool { c >= 48 && c <= 57 }
    private static func all(_ b: ArraySlice<UInt8>, _ ok: (UInt8) -> Bool) -> Bool { !b.isEmpty && b.allSatisfy(ok) }
    private static func unsigned(_ b: [UInt8]) -> ArraySlice<UInt8> {
        b.first == UInt8(ascii: "-") || b.first == UInt8(ascii: "+") ? b.dropFirst() : b[...]
    }

    /// `(:[0-5]?[0-9])+` to the end.
    private static func sexagesimalTail(_ b: ArraySlice<UInt8>) -> Bool {
        guard !b.isEmpty else { return false }
        for part in b.split(separator: UInt8(ascii: ":"), omittingEmptySubsequences: false).dropFirst() {
            guard part.count == 1 && digit(part[part.startIndex])
                    || part.count == 2 && part.first.map({ $0 >= 48 && $0 <= 53 }) == true && digit(part[part.startIndex + 1])
            else { return false }
        }
        return b.first == UInt8(ascii: ":")
    }

    static func isInt(_ b: [UInt8]) -> Bool {
        let u = unsigned(b)
        guard let first = u.first else { return false }
        let rest = u.dropFirst()
        if first == UInt8(ascii: "0") {
            if rest.first == UInt8(ascii: "b") { return all(rest.dropFirst()) { $0 == 48 || $0 == 49 || $0 == 95 } }
            if rest.first == UInt8(ascii: "x") {
                return all(rest.dropFirst()) { digit($0) || ($0 | 0x20) >= 97 && ($0 | 0x20) <= 102 || $0 == 95 }
            }
            if rest.isEmpty { return true }
            let octal = rest.first == UInt8(ascii: "o") ? rest.dropFirst() : rest
            return all(octal) { $0 >= 48 && $0 <= 55 || $0 == 95 }
        }
        guard first >= 49 && first <= 57 else { return false }
        let head = rest.prefix { digit($0) || $0 == 95 }
        let tail = rest[head.endIndex...]
        return tail.isEmpty || sexagesimalTail(tail)
    }

    static func isFloat(_ b: [UInt8]) -> Bool {
        let u = unsigned(b)
        if b.first == UInt8(ascii: "."), ["nan", "NaN", "NAN"].contains(String(decoding: b.dropFirst(), as: UTF8.self)) { return true }
        if u.first == UInt8(ascii: "."), ["inf", "Inf", "INF"].contains(String(decoding: u.dropFirst(), as: UTF8.self)) { return true }
        // \.[0-9_]+(?:[eE][-+][0-9]+)? with no sign
        if b.first == UInt8(ascii: ".") {
            let frac = b.dropFirst().prefix { digit($0) || $0 == 95 }
            guard !frac.isEmpty else { return false }
            let exp = b[frac.endIndex...]
            if exp.isEmpty { return true }
            guard exp.count >= 3, exp.first.map({ $0 | 0x20 == 101 }) == true,
                  exp.dropFirst().first == UInt8(ascii: "-") || exp.dropFirst().first == UInt8(ascii: "+")
            else { return false }
            return all(exp.dropFirst(2), digit)
        }
        guard let first = u.first, digit(first) else { return false }
        let intPart = u.prefix { digit($0) || $0 == 95 }
        var rest = u[intPart.endIndex...]
        // [0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
        if rest.first == UInt8(ascii: ":") {
            guard let dot = rest.firstIndex(of: UInt8(ascii: ".")) else { return false }
            return sexagesimalTail(rest[..<dot]) && rest[(dot + 1)...].allSatisfy { digit($0) || $0 == 95 }
        }
        if rest.first == UInt8(ascii: ".") {
            rest = rest.dropFirst().drop { digit($0) || $0 == 95 }
        }
        if rest.isEmpty { return true }
        guard rest.first.map({ $0 | 0x20 == 101 }) == true else { return false }
        var exp = rest.dropFirst()
        if exp.first == UInt8(ascii: "-") || exp.first == UInt8(ascii: "+") { exp = exp.dropFirst() }
        return all(exp, digit)
    }

    static func isTimestamp(_ b: [UInt8]) -> Bool {
        var i = 0
        func digits(_ min: Int, _ max: Int) -> Bool {
            var n = 0
            while n < max, i < b.count, digit(b[i]) { i += 1; n += 1 }
            return n >= min
        }
        func byte(_ c: Character) -> Bool {
            guard i < b.count, b[i] == c.asciiValue else { return false }
            i += 1
            return true
        }
        guard digits(4, 4), byte("-") else { return false }
        let monthStart = i
        guard digits(1, 2), byte("-"), digits(1, 2) else { return false }
        if i == b.count { return i - monthStart == 5 }  // the date alone: two-digit month and day
        if !(byte("T") || byte("t")) {
            var spaces = 0
            while i < b.count, b[i] == 0x20 || b[i] == 0x09 { i += 1; spaces += 1 }
            guard spaces > 0 else { return false }
        }
        guard digits(1, 2), byte(":"), digits(2, 2), byte(":"), digits(2, 2) else { return false }
        if byte(".") { _ = digits(0, Int.max) }
        while i < b.count, b[i] == 0x20 || b[i] == 0x09 { i += 1 }
        if i == b.count { return true }
        if byte("Z") { return i == b.count }
        guard byte("-") || byte("+"), digits(1, 2) else { return false }
        if byte(":") { guard digits(2, 2) else { return false } }
        return i == b.count
    }
}

import AnduinCore

/// An index name made of literal text, the record's time (`%Y %m %d %H`, UTC) and record fields
/// (`{kubernetes.namespace_name}`), parsed once and rendered per record without allocation.
struct IndexPattern: Sendable {
    enum Part: Sendable {
        case literal([UInt8])
        case year, month, day, hour
        case field([[UInt8]])
    }
    let parts: [Part]
    let usesFields: Bool

    /// Parses `pattern`; returns a problem text when it is malformed.
    static func parse(_ pattern: String) -> Result<IndexPattern, ConfigProblem> {
        var parts: [Part] = []
        var lit: [UInt8] = []
        var chars = Array(pattern.utf8)[...]
        func flush() {
            if !lit.isEmpty { parts.append(.literal(lit)); lit = [] }
        }
        while let c = chars.popFirst() {
            if c == UInt8(ascii: "%") {
                guard let code = chars.popFirst() else { return .failure(ConfigProblem("ends with a lone %")) }
                flush()
                switch code {
                case UInt8(ascii: "Y"): parts.append(.year)
                case UInt8(ascii: "m"): parts.append(.month)
                case UInt8(ascii: "d"): parts.append(.day)
                case UInt8(ascii: "H"): parts.append(.hour)
                case UInt8(ascii: "%"): lit.append(c)
                default: return .failure(ConfigProblem("unknown time code %\(Character(UnicodeScalar(code))); use %Y, %m, %d or %H"))
                }
            } else if c == UInt8(ascii: "{") {
                guard let close = chars.firstIndex(of: UInt8(ascii: "}")) else { return .failure(ConfigProblem("unclosed {")) }
                let path = chars[chars.startIndex..<close].split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false).map(Array.init)
                if path.isEmpty || path.contains(where: \.isEmpty) { return .failure(ConfigProblem("empty field name in {}")) }
                flush()
                parts.append(.field(path))
                chars = chars[(close + 1)...]
            } else {
                if c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z") {
                    return .failure(ConfigProblem("index names must be lowercase (Elasticsearch refuses uppercase)"))
                }
                lit.append(c)
            }
        }
        flush()
        return .success(IndexPattern(parts: parts, usesFields: parts.contains { if case .field = $0 { true } else { false } }))
    }

    /// Appends the index name of record `i` to `out`, already escaped for a JSON string.
    func render(_ batch: EncodedBatch, _ i: Int, into out: inout [UInt8]) {
        let ts = batch.records[i].timestamp
        let days = ts >= 0 ? ts / 86_400_000_000_000 : (ts + 1) / 86_400_000_000_000 - 1
        let (y, m, d) = Timestamp.civilFromDays(days)
        let hour = (ts / 3_600_000_000_000 % 24 + 24) % 24
        for p in parts {
            switch p {
            case .literal(let l): JSONWriter.appendEscaped(l.withUnsafeBytes { $0 }, to: &out)
            case .year: JSONWriter.appendInt(y, to: &out)
            case .month: two(m, &out)
            case .day: two(d, &out)
            case .hour: two(hour, &out)
            case .field(let path): appendField(batch, i, path, &out)
            }
        }
    }

    private func two(_ v: Int64, _ out: inout [UInt8]) {
        out.append(UInt8(v / 10) + 48)
        out.append(UInt8(v % 10) + 48)
    }

    /// A field's value, lowercased (index names must be), or `unknown` when the record lacks it.
    private func appendField(_ batch: EncodedBatch, _ i: Int, _ path: [[UInt8]], _ out: inout [UInt8]) {
        let found: [UInt8]? = batch.withDocument(i) { doc -> [UInt8]? in
            // The document is one object: look up inside its braces.
            guard doc.count >= 2 else { return nil }
            let members = UnsafeRawBufferPointer(rebasing: doc[1..<(doc.count - 1)])
            guard let r = JSONScan.lookup(members, path: path) else { return nil }
            var v = Array(UnsafeRawBufferPointer(rebasing: members[r]))
            if v.first == UInt8(ascii: "\"") && v.count >= 2 { v = Array(v[1..<(v.count - 1)]) }
            return v
        }
        guard let value = found, !value.isEmpty else {
            out.append(contentsOf: "unknown".utf8)
            return
        }
        for b in value {
            switch b {
            // Characters Elasticsearch refuses in index names become '_'.
            case UInt8(ascii: "A")...UInt8(ascii: "Z"): out.append(b + 32)
            case UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "*"), UInt8(ascii: "?"), UInt8(ascii: "\""),
                 UInt8(ascii: "<"), UInt8(ascii: ">"), UInt8(ascii: "|"), UInt8(ascii: " "), UInt8(ascii: ","),
                 UInt8(ascii: "#"), UInt8(ascii: ":"):
                out.append(UInt8(ascii: "_"))
            default: out.append(b)
            }
        }
    }
}

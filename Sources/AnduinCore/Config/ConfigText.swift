/// Checks of a config file's bytes before the YAML parser sees them, and the translation of the
/// parser's errors: every problem becomes one `FILE:LINE:COLUMN: message` line, none embeds the
/// file's text (it may hold passwords), and nothing a file contains can crash the reader.
public enum ConfigText {
    /// A config is a few KiB; anything past this is not one.
    public static let maximumBytes = 1 << 20
    /// Nesting deeper than this is refused before parsing: the YAML composer recurses once per level.
    public static let maximumDepth = 100
    /// Values after alias expansion: `&a [*b, *b, ...]` chains grow exponentially ("billion laughs").
    public static let maximumValues = 100_000

    /// The first problem of the raw bytes (not UTF-8, a NUL or other control byte, too large, nested
    /// too deeply), or nil.
    public static func check(_ bytes: some Collection<UInt8>, file: String) -> ConfigDiagnostic? {
        if bytes.count > maximumBytes {
            return ConfigDiagnostic(SourceMark(file: file, line: 1, column: 1),
                                    "the file is larger than \(ByteSize.format(maximumBytes)), the most a config may be: is it a config file?")
        }
        var line = 1, column = 1
        var atIndent = true, inMarkers = false, indent = 0, markers = 0, flow = 0
        var it = bytes.makeIterator()
        var pending: UInt8?
        func next() -> UInt8? {
            if let p = pending {
                pending = nil
                return p
            }
            return it.next()
        }
        while let b = next() {
            let at = SourceMark(file: file, line: line, column: column)
            // UTF-8: a lead byte and its continuation bytes make one column.
            if b >= 0x80 {
                let need: Int
                switch b {
                case 0xC2...0xDF: need = 1
                case 0xE0...0xEF: need = 2
                case 0xF0...0xF4: need = 3
                default: return ConfigDiagnostic(at, "byte 0x\(hex(b)) is not UTF-8 text: is this a binary file?")
                }
                for _ in 0..<need {
                    guard let c = next(), c & 0xC0 == 0x80 else {
                        return ConfigDiagnostic(at, "byte 0x\(hex(b)) starts an invalid UTF-8 sequence: is this a binary file?")
                    }
                }
                atIndent = false
                column += 1
                continue
            }
            switch b {
            case 0x0A:
                line += 1
                column = 1
                atIndent = true
                inMarkers = false
                indent = 0
                markers = 0
                continue
            case 0x09, 0x0D:
                break
            case 0..<0x20, 0x7F:
                let name = b == 0 ? "a NUL byte" : "control character 0x\(hex(b))"
                return ConfigDiagnostic(at, "\(name) in the config file: is this a binary file?")
            case UInt8(ascii: " "):
                if atIndent { indent += 1 }
            case UInt8(ascii: "-"), UInt8(ascii: "?"):
                // `- - - x` nests one level per marker on a single line.
                if atIndent || inMarkers {
                    markers += 1
                    inMarkers = true
                }
                atIndent = false
            case UInt8(ascii: "["), UInt8(ascii: "{"):
                flow += 1
                atIndent = false
                inMarkers = false
            case UInt8(ascii: "]"), UInt8(ascii: "}"):
                flow = max(0, flow - 1)
                atIndent = false
                inMarkers = false
            default:
                atIndent = false
                inMarkers = false
            }
            // An upper bound of the nesting depth: each block level needs a column of indentation or a marker.
            if indent / 2 + markers + flow > maximumDepth {
                return ConfigDiagnostic(at, "nested more than \(maximumDepth) levels deep")
            }
            column += 1
        }
        return nil
    }

    private static func hex(_ b: UInt8) -> String {
        let s = String(b, radix: 16, uppercase: true)
        return s.count == 1 ? "0" + s : s
    }

    /// One line for a YAML parser error, at its position; never the file's text.
    public static func diagnostic(for error: any Error, yaml: String, file: String) -> ConfigDiagnostic {
        func at(_ line: Int, _ column: Int) -> SourceMark {
            SourceMark(file: file, line: max(1, line), column: max(1, column))
        }
        guard let error = error as? YAMLError else {
            return ConfigDiagnostic(at(1, 1), "YAML syntax error")
        }
        switch error {
        case .syntax(let problem, let line, let column, let context):
            var msg = "YAML syntax error: \(problem)"
            if let context { msg += " (\(context.text) at line \(context.line), column \(context.column))" }
            return ConfigDiagnostic(at(line, column), msg)
        case .reader(let problem, let byteOffset):
            // The offset in characters, then counted as bytes again (the reading of earlier versions).
            let index = yaml.utf8.index(yaml.utf8.startIndex, offsetBy: byteOffset, limitedBy: yaml.utf8.endIndex)
            let offset = index.map { yaml.distance(from: yaml.startIndex, to: $0) }
            let (line, column) = offset.map { position(ofByte: $0, in: yaml) } ?? (1, 1)
            return ConfigDiagnostic(at(line, column), "YAML cannot be read: \(problem)")
        case .duplicateKey(let key, let line, let column):
            // Point at the second occurrence (the one to remove), found at the first's indentation.
            let again = secondOccurrence(of: key, after: line, column: column, in: yaml)
            let mark = again.map { at($0, column) } ?? at(line, column)
            return ConfigDiagnostic(mark, "duplicate key \"\(key)\" (first at line \(line)); each key may appear once in a mapping")
        case .memory:
            return ConfigDiagnostic(at(1, 1), "YAML error")
        }
    }

    static func position(ofByte offset: Int, in text: String) -> (Int, Int) {
        var line = 1, column = 1
        for (i, b) in text.utf8.enumerated() {
            if i >= offset { break }
            if b == 0x0A {
                line += 1
                column = 1
            } else if b & 0xC0 != 0x80 {
                column += 1
            }
        }
        return (line, column)
    }

    private static func secondOccurrence(of key: String, after line: Int, column: Int, in yaml: String) -> Int? {
        for (i, text) in yaml.split(separator: "\n", omittingEmptySubsequences: false).enumerated() where i + 1 > line {
            let body = text.dropFirst(column - 1)
            for form in [key, "\"\(key)\"", "'\(key)'"] where body.hasPrefix(form) {
                if body.dropFirst(form.count).drop(while: { $0 == " " }).first == ":" { return i + 1 }
            }
        }
        return nil
    }
}

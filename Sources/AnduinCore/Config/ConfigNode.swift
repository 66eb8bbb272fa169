import Yams

/// A position in the config file, for messages a user can act on.
public struct SourceMark: Sendable, Hashable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int
    public init(file: String, line: Int, column: Int) {
        self.file = file
        self.line = line
        self.column = column
    }
    public var description: String { "\(file):\(line):\(column)" }
}

/// One problem found in a config, printed as `FILE:LINE:COLUMN: message`.
public struct ConfigDiagnostic: Sendable, Hashable, CustomStringConvertible {
    public var mark: SourceMark
    public var message: String
    public init(_ mark: SourceMark, _ message: String) {
        self.mark = mark
        self.message = message
    }
    public var description: String { "\(mark): \(message)" }

    /// `text` as one log line: control and other non-printable characters escaped (`\n`, `\u{1b}`),
    /// at most 500 characters. For messages that may quote config text.
    public static func logSafe(_ text: String) -> String {
        var out = ""
        var count = 0
        for scalar in text.unicodeScalars {
            if count >= 500 {
                out += "…"
                break
            }
            switch scalar {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) || scalar.value == 0xFFFD
                    || scalar.properties.generalCategory == .format {
                    out += "\\u{\(String(scalar.value, radix: 16))}"
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
            count += 1
        }
        return out
    }
}

/// Collects every problem instead of stopping at the first: `anduin validate` shows them all.
public final class Diagnostics: @unchecked Sendable {
    // Used from one thread during config loading only.
    public private(set) var items: [ConfigDiagnostic] = []
    public init() {}
    public func error(_ mark: SourceMark, _ message: String) { items.append(ConfigDiagnostic(mark, message)) }
    public var isEmpty: Bool { items.isEmpty }
    public var sorted: [ConfigDiagnostic] {
        items.sorted { ($0.mark.line, $0.mark.column) < ($1.mark.line, $1.mark.column) }
    }
}

/// A YAML node with its position, after `${ENV}` substitution in scalars.
public indirect enum ConfigValue: Sendable {
    case scalar(String, SourceMark, plain: Bool)
    case mapping([(key: String, keyMark: SourceMark, value: ConfigValue)], SourceMark)
    case sequence([ConfigValue], SourceMark)
    case null(SourceMark)

    public var mark: SourceMark {
        switch self {
        case .scalar(_, let m, _), .mapping(_, let m), .sequence(_, let m), .null(let m): return m
        }
    }

    public var kindName: String {
        switch self {
        case .scalar: return "a scalar"
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .null: return "nothing (null)"
        }
    }

    /// Parses YAML text into a tree of values with marks. Problems go to `diags`; returns nil when the
    /// YAML itself cannot be read.
    public static func parse(yaml: String, file: String, environment: [String: String],
                             diagnostics diags: Diagnostics) -> ConfigValue? {
        let node: Node?
        do {
            node = try Yams.compose(yaml: yaml)
        } catch let error as YamlError {
            diags.error(markOf(error, file: file), "YAML syntax error: \(describe(error))")
            return nil
        } catch {
            diags.error(SourceMark(file: file, line: 1, column: 1), "YAML syntax error: \(error)")
            return nil
        }
        guard let node else { return .mapping([], SourceMark(file: file, line: 1, column: 1)) }
        return convert(node, file: file, env: environment, diags: diags)
    }

    private static func mark(_ m: Mark?, _ file: String) -> SourceMark {
        SourceMark(file: file, line: m?.line ?? 1, column: m?.column ?? 1)
    }

    private static func convert(_ node: Node, file: String, env: [String: String], diags: Diagnostics) -> ConfigValue {
        let m = mark(node.mark, file)
        switch node {
        case .scalar(let s):
            if s.style == .plain && (s.string == "~" || s.string == "null" || s.string.isEmpty) {
                return .null(m)
            }
            let value = EnvSubstitution.substitute(s.string, env: env) { problem in
                diags.error(m, problem)
            }
            return .scalar(value, m, plain: s.style == .plain)
        case .mapping(let map):
            var entries: [(key: String, keyMark: SourceMark, value: ConfigValue)] = []
            var seen: [String: SourceMark] = [:]
            for (k, v) in map {
                let km = mark(k.mark, file)
                guard case .scalar(let ks) = k else {
                    diags.error(km, "a key must be a plain name, not \(k)")
                    continue
                }
                if let first = seen[ks.string] {
                    diags.error(km, "duplicate key \"\(ks.string)\" (first at line \(first.line))")
                    continue
                }
                seen[ks.string] = km
                entries.append((ks.string, km, convert(v, file: file, env: env, diags: diags)))
            }
            return .mapping(entries, m)
        case .sequence(let seq):
            return .sequence(seq.map { convert($0, file: file, env: env, diags: diags) }, m)
        case .alias:
            return .null(m)
        }
    }

    private static func markOf(_ error: YamlError, file: String) -> SourceMark {
        switch error {
        case .scanner(_, _, let mark, _), .parser(_, _, let mark, _), .composer(_, _, let mark, _):
            return SourceMark(file: file, line: mark.line, column: mark.column)
        case .duplicatedKeysInMapping(_, let context):
            return SourceMark(file: file, line: context.mark.line, column: context.mark.column)
        default:
            return SourceMark(file: file, line: 1, column: 1)
        }
    }

    private static func describe(_ error: YamlError) -> String {
        switch error {
        case .scanner(let context, let problem, _, _), .parser(let context, let problem, _, _),
             .composer(let context, let problem, _, _):
            if let context { return "\(problem) (\(context.text))" }
            return problem
        // Yams' own descriptions of these quote the YAML around the problem, which may hold an inline
        // password: only the problem is shown.
        case .reader(let problem, _, _, _):
            return problem
        case .duplicatedKeysInMapping(let duplicates, _):
            return "duplicate key(s) \(duplicates.sorted().map { "\"\($0)\"" }.joined(separator: ", "))"
        default:
            return "\(error)"
        }
    }
}

/// `${NAME}` and `${NAME:-default}` in config values; `$$` is a literal `$`.
public enum EnvSubstitution {
    public static func substitute(_ s: String, env: [String: String], problem: (String) -> Void) -> String {
        guard s.contains("$") else { return s }
        var out = ""
        var chars = Substring(s)
        while let i = chars.firstIndex(of: "$") {
            out += chars[..<i]
            let rest = chars[chars.index(after: i)...]
            if rest.first == "$" {
                out += "$"
                chars = rest.dropFirst()
                continue
            }
            guard rest.first == "{", let close = rest.firstIndex(of: "}") else {
                out += "$"
                chars = rest
                continue
            }
            let body = rest[rest.index(after: rest.startIndex)..<close]
            let name: Substring
            var fallback: Substring?
            if let r = body.range(of: ":-") {
                name = body[..<r.lowerBound]
                fallback = body[r.upperBound...]
            } else {
                name = body
            }
            if let v = env[String(name)], !(fallback != nil && v.isEmpty) {
                out += v
            } else if let fallback {
                out += fallback
            } else {
                problem("environment variable \(name) is not set (write ${\(name):-default} to give a default)")
            }
            chars = rest[rest.index(after: close)...]
        }
        out += chars
        return out
    }
}

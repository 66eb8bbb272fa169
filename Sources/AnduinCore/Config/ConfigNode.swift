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
    /// One line whatever the message holds: control characters and invalid text are escaped.
    public var description: String { "\(printable(mark.description)): \(printable(message))" }

    /// `text` as one log line: non-printable characters escaped (as in `description`), at most 500
    /// characters. For messages that may quote config text.
    public static func logSafe(_ text: String) -> String {
        let line = printable(text)
        return line.count > 500 ? String(line.prefix(500)) + "…" : line
    }
}

/// Collects every problem instead of stopping at the first: `anduin validate` shows them all.
public final class Diagnostics {
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
        if let problem = ConfigText.check(yaml.utf8, file: file) {
            diags.error(problem.mark, problem.message)
            return nil
        }
        let node: YAMLNode?
        do {
            node = try YAMLLoader.compose(yaml)
        } catch {
            let d = ConfigText.diagnostic(for: error, yaml: yaml, file: file)
            diags.error(d.mark, d.message)
            return nil
        }
        guard let node else { return .mapping([], SourceMark(file: file, line: 1, column: 1)) }
        var budget = ConfigText.maximumValues
        let value = convert(node, file: file, env: environment, diags: diags, budget: &budget)
        return budget < 0 ? nil : value
    }

    private static func mark(_ node: YAMLNode, _ file: String) -> SourceMark {
        SourceMark(file: file, line: node.line, column: node.column)
    }

    /// `budget` counts the values left: aliases may expand a small file into billions of them.
    private static func convert(_ node: YAMLNode, file: String, env: [String: String], diags: Diagnostics,
                                budget: inout Int) -> ConfigValue {
        let m = mark(node, file)
        budget -= 1
        if budget == -1 {
            diags.error(m, "more than \(ConfigText.maximumValues) values (do aliases repeat a large anchor?)")
        }
        if budget < 0 { return .null(m) }
        switch node {
        case .scalar(let s, let plain, _, _, _):
            if plain && (s == "~" || s == "null" || s.isEmpty) {
                return .null(m)
            }
            let value = EnvSubstitution.substitute(s, env: env) { problem in
                diags.error(m, problem)
            }
            return .scalar(value, m, plain: plain)
        case .mapping(let map, _, _, _):
            var entries: [(key: String, keyMark: SourceMark, value: ConfigValue)] = []
            var seen: [String: SourceMark] = [:]
            for (k, v) in map {
                let km = mark(k, file)
                guard case .scalar(let ks, _, _, _, _) = k else {
                    if case .sequence = k { diags.error(km, "a key must be a plain name, not a list") } else {
                        diags.error(km, "a key must be a plain name, not a mapping")
                    }
                    continue
                }
                if let first = seen[ks] {
                    diags.error(km, "duplicate key \"\(ks)\" (first at line \(first.line))")
                    continue
                }
                seen[ks] = km
                entries.append((ks, km, convert(v, file: file, env: env, diags: diags, budget: &budget)))
            }
            return .mapping(entries, m)
        case .sequence(let seq, _, _, _):
            var items: [ConfigValue] = []
            for item in seq where budget >= 0 {
                items.append(convert(item, file: file, env: env, diags: diags, budget: &budget))
            }
            return .sequence(items, m)
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
            if let r = body.firstRange(of: ":-") {
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

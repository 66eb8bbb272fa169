#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads one component's (or the top level's) mapping into typed values, reporting every problem
/// with its position. With an option table (`options:`, every plugin and the top level), a key is
/// unknown exactly when it is not declared, and options are read with `get(_:)`; a mapping without one
/// (the tests file of `anduin test`) reports as unknown whatever key its reader did not ask for.
///
/// Used on one thread while a config loads.
public final class ConfigReader {
    /// Human name of what is being read, e.g. `input "containers" (tail)`.
    public let context: String
    public let mark: SourceMark
    public let diagnostics: Diagnostics
    private let entries: [(key: String, keyMark: SourceMark, value: ConfigValue)]
    private var used: Set<String> = []
    /// The declared options, when this mapping has a table.
    public let declared: [OptionSpec]?

    /// Folder of the config file: relative paths in options are relative to it, so a config means the
    /// same thing whatever the working directory.
    public let baseDirectory: String

    public init(_ value: ConfigValue, context: String, diagnostics: Diagnostics, baseDirectory: String = "",
                options: [OptionSpec]? = nil) {
        self.context = context
        self.declared = options
        self.baseDirectory = baseDirectory
        self.mark = value.mark
        self.diagnostics = diagnostics
        if case .mapping(let e, _) = value {
            entries = e
        } else {
            entries = []
            if case .null = value {} else {
                diagnostics.error(value.mark, "\(context): expected a mapping of options, got \(value.kindName)")
            }
        }
    }

    public var keys: [String] { entries.map(\.key) }

    /// The raw value of `key`, marking it as known.
    public func value(_ key: String) -> ConfigValue? {
        // Reading an option that is not in the table is a bug of the plugin: the reference and
        // the unknown-key check would not know it.
        assert(declared.map { $0.contains { $0.key == key } } ?? true, "\(context): option \"\(key)\" is read but not declared")
        used.insert(key)
        guard let v = entries.first(where: { $0.key == key })?.value else { return nil }
        if case .null = v { return nil }
        return v
    }

    public func has(_ key: String) -> Bool { entries.contains { $0.key == key } }

    /// Where `key` is written (or the mapping itself when absent), for a plugin's own checks.
    public func markOf(_ key: String) -> SourceMark {
        entries.first(where: { $0.key == key })?.value.mark ?? mark
    }

    public func error(_ key: String?, _ message: String) {
        diagnostics.error(key.map(markOf) ?? mark, "\(context): \(key.map { "\($0): " } ?? "")\(message)")
    }

    // MARK: typed getters (each reports a wrong type and returns the default)

    public func string(_ key: String) -> String? {
        guard let v = value(key) else { return nil }
        guard case .scalar(let s, _, _) = v else {
            typeError(key, v, "a string")
            return nil
        }
        return s
    }

    public func string(_ key: String, default d: String) -> String { string(key) ?? d }

    /// A required string: reports a missing key.
    public func requiredString(_ key: String, hint: String = "") -> String? {
        if let s = string(key) { return s }
        if !has(key) { diagnostics.error(mark, "\(context): missing required key \"\(key)\"\(hint)") }
        return nil
    }

    /// A file path (or glob), made absolute against the config file's folder.
    public func path(_ key: String) -> String? { string(key).map(resolvePath) }

    public func pathList(_ key: String) -> [String] { stringList(key).map(resolvePath) }

    public func resolvePath(_ p: String) -> String {
        if p.hasPrefix("/") || baseDirectory.isEmpty { return p }
        var rel = Substring(p)
        while rel.hasPrefix("./") { rel = rel.dropFirst(2) }
        return baseDirectory.hasSuffix("/") ? baseDirectory + rel : baseDirectory + "/" + rel
    }

    public func bool(_ key: String, default d: Bool) -> Bool {
        guard let v = value(key) else { return d }
        if case .scalar(let s, _, let plain) = v, plain {
            switch s.lowercased() {
            case "true", "yes", "on": return true
            case "false", "no", "off": return false
            default: break
            }
        }
        typeError(key, v, "true or false")
        return d
    }

    public func int(_ key: String, default d: Int, range: ClosedRange<Int>? = nil) -> Int {
        guard let v = value(key) else { return d }
        guard case .scalar(let s, _, let plain) = v, plain else {
            typeError(key, v, "a whole number")
            return d
        }
        let digits = s.replacing("_", with: "")
        guard let n = Int(digits) else {
            if !digits.isEmpty, digits.drop(while: { $0 == "-" || $0 == "+" }).allSatisfy({ ("0"..."9").contains($0) }) {
                error(key, "\(s) is out of range\(range.map { " (\($0.lowerBound)...\($0.upperBound))" } ?? "")")
            } else {
                typeError(key, v, "a whole number")
            }
            return d
        }
        if let range, !range.contains(n) {
            error(key, "\(n) is out of range (\(range.lowerBound)...\(range.upperBound))")
            return d
        }
        return n
    }

    /// A byte size: a plain number of bytes or a binary unit (`64KiB`, `1MiB`, `1GiB`).
    public func size(_ key: String, default d: Int, minimum: Int) -> Int {
        size(key, default: d, range: minimum...defaultSizeRange.upperBound)
    }

    /// A byte size within `range`.
    public func size(_ key: String, default d: Int, range: ClosedRange<Int> = defaultSizeRange) -> Int {
        guard let v = value(key) else { return d }
        guard case .scalar(let s, _, _) = v else {
            typeError(key, v, "a size such as 1MiB")
            return d
        }
        switch ByteSize.parse(s) {
        case .success(let n):
            if n < range.lowerBound {
                error(key, "\(s) is too small (at least \(ByteSize.format(range.lowerBound)))")
                return d
            }
            if n > range.upperBound {
                error(key, "\(s) is too large (at most \(ByteSize.format(range.upperBound)))")
                return d
            }
            return n
        case .failure(let problem):
            error(key, problem.message)
            return d
        }
    }

    /// A duration in seconds: `250ms`, `1s`, `5m`, `1h`, `1d`, or a plain number of seconds, within
    /// `range` (by default at most 7 days: longer ones are mistakes, and would overflow the
    /// nanosecond clocks they end up in).
    public func duration(_ key: String, default d: Double, range: ClosedRange<Double> = defaultDurationRange) -> Double {
        guard let v = value(key) else { return d }
        guard case .scalar(let s, _, _) = v else {
            typeError(key, v, "a duration such as 1s or 250ms")
            return d
        }
        guard let secs = DurationText.parse(s) else {
            error(key, "invalid duration \"\(s)\": use a number with ms, s, m, h or d, such as 250ms or 5s")
            return d
        }
        if secs < range.lowerBound {
            error(key, "\(s) is too short (at least \(DurationText.format(range.lowerBound)))")
            return d
        }
        if secs > range.upperBound {
            error(key, "\(s) is too long (at most \(DurationText.format(range.upperBound)))")
            return d
        }
        return secs
    }

    public func stringList(_ key: String, default d: [String] = []) -> [String] {
        guard let v = value(key) else { return d }
        guard case .sequence(let items, _) = v else {
            typeError(key, v, "a list of strings, such as [\"a\", \"b\"]")
            return d
        }
        var out: [String] = []
        for item in items {
            guard case .scalar(let s, _, _) = item else {
                diagnostics.error(item.mark, "\(context): \(key): expected a string in the list, got \(item.kindName)")
                continue
            }
            out.append(s)
        }
        return out
    }

    /// One of a fixed set of words.
    public func choice<E: RawRepresentable & CaseIterable>(_ key: String, default d: E) -> E where E.RawValue == String {
        guard let v = value(key) else { return d }
        guard case .scalar(let s, _, _) = v else {
            typeError(key, v, "one of \(E.allCases.map(\.rawValue).joined(separator: ", "))")
            return d
        }
        guard let e = E(rawValue: s) else {
            error(key, "unknown value \"\(s)\"; expected one of \(E.allCases.map(\.rawValue).joined(separator: " | "))")
            return d
        }
        return e
    }

    /// A nested mapping, read by its own reader (finished together with this one).
    public func mapping(_ key: String) -> ConfigReader? {
        guard let v = value(key) else { return nil }
        guard case .mapping = v else {
            typeError(key, v, "a mapping")
            return nil
        }
        var childOptions: [OptionSpec]?
        if let declared {
            childOptions = declared.first { $0.key == key }?.children
        }
        let sub = ConfigReader(v, context: "\(context): \(key)", diagnostics: diagnostics, baseDirectory: baseDirectory,
                               options: childOptions)
        children.append(sub)
        return sub
    }

    /// A mapping of string keys to string values (e.g. extra headers), in file order.
    public func stringMap(_ key: String) -> [(String, String)] {
        guard let v = value(key) else { return [] }
        guard case .mapping(let entries, _) = v else {
            typeError(key, v, "a mapping of names to strings")
            return []
        }
        var out: [(String, String)] = []
        for e in entries {
            guard case .scalar(let s, _, _) = e.value else {
                diagnostics.error(e.value.mark, "\(context): \(key).\(e.key): expected a string, got \(e.value.kindName)")
                continue
            }
            out.append((e.key, s))
        }
        return out
    }

    private var children: [ConfigReader] = []

    /// Reports every key nobody asked for, with the closest known key as a hint.
    public func finish() {
        let known = declared.map { Set($0.map(\.key)) } ?? used
        for e in entries where !known.contains(e.key) {
            var msg = "\(context): unknown key \"\(e.key)\""
            // `max_records` at the top of an output belongs under `batch:` or `buffer:`.
            let groups = (declared ?? []).filter { $0.children?.contains { $0.key == e.key } ?? false }.map(\.key)
            if !groups.isEmpty {
                msg += " (it goes under \(groups.map { "\($0):" }.joined(separator: " or ")))"
            } else if let guess = closest(e.key, in: known) {
                msg += " (did you mean \"\(guess)\"?)"
            }
            if !known.isEmpty { msg += "; known keys: \(known.sorted().joined(separator: ", "))" }
            diagnostics.error(e.keyMark, msg)
        }
        for c in children { c.finish() }
        children = []
    }

    private func typeError(_ key: String, _ v: ConfigValue, _ expected: String) {
        var got = v.kindName
        // The value is quoted to help, unless it may be a secret: a secret option's, or a URL's userinfo.
        let secret = declared?.first { $0.key == key }?.kind.isSecret ?? false
        if case .scalar(let text, _, _) = v, !secret {
            let s = text.contains("@") ? URLUserinfo(text).url : text
            got = s.count > 60 ? "\"\(s.prefix(60))…\"" : "\"\(s)\""
        }
        diagnostics.error(v.mark, "\(context): \(key): expected \(expected), got \(got)")
    }
}

/// The closest word by edit distance (a swap of two letters counts as one edit), when it is close
/// enough to be a likely typo.
public func closest(_ word: String, in candidates: some Sequence<String>) -> String? {
    var best: (String, Int)?
    for c in candidates {
        let d = editDistance(Array(word.utf8), Array(c.utf8))
        if d <= max(1, c.utf8.count / 3), d < (best?.1 ?? .max) { best = (c, d) }
    }
    return best?.0
}

func editDistance(_ a: [UInt8], _ b: [UInt8]) -> Int {
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    // Optimal string alignment distance, rows kept for the transposition step.
    var d = [[Int]](repeating: [Int](repeating: 0, count: b.count + 1), count: a.count + 1)
    for i in 0...a.count { d[i][0] = i }
    for j in 0...b.count { d[0][j] = j }
    for i in 1...a.count {
        for j in 1...b.count {
            let cost = a[i - 1] == b[j - 1] ? 0 : 1
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
            }
        }
    }
    return d[a.count][b.count]
}


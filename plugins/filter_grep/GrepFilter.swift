import AnduinCore

/// The `grep` filter: keeps or drops records by the values of their fields.
///
///     filters:
///       errors-only:
///         type: grep
///         from: [containers]
///         include: {level: "^(error|warn)$", kubernetes.namespace_name: prod}   # all must match
///         exclude: {message: "GET /health", kubernetes.labels["app.kubernetes.io/name"]: debug-tools}  # any match drops
///
/// Keys are field paths (see `FieldPath`); values are regular expressions, found anywhere in the
/// value unless anchored. A record without the field fails an `include` and passes an `exclude`.
/// Numbers and booleans are matched as their JSON text, objects and arrays as compact JSON.
public enum GrepPlugin {
    static let table = OptionTable(fields: GrepConfig(), check: needsARule)

    @Sendable static func needsARule(_ reader: ConfigReader, _ c: inout GrepConfig, _ fieldsClean: Bool) {
        if c.include.isEmpty && c.exclude.isEmpty && fieldsClean {
            reader.error(nil, "give include: {field: regex} (all must match), exclude: {field: regex} (any match drops), or both")
        }
    }

    public static let spec: PluginSpec = .filter("grep", "keep or drop records by field values (regular expressions)", table)

    static func rules(_ reader: ConfigReader, _ key: String) -> [GrepRule] {
        var out: [GrepRule] = []
        for (path, pattern) in reader.stringMap(key) {
            let fp: FieldPath
            switch FieldPath.parse(path) {
            case .success(let p): fp = p
            case .failure(let problem):
                reader.error(key, problem.message)
                continue
            }
            do {
                out.append(GrepRule(path: fp, pattern: try ValuePattern(pattern)))
            } catch {
                reader.error(key, "\(path): invalid regular expression \"\(pattern)\": \(error)")
            }
        }
        return out
    }
}

public struct GrepRule: Sendable {
    public var path: FieldPath
    public var pattern: ValuePattern
    public init(path: FieldPath, pattern: ValuePattern) {
        self.path = path
        self.pattern = pattern
    }
}

/// The options of the `grep` filter, one `@OptionField` each (`GrepPlugin.table`).
public struct GrepConfig: FilterConfig {
    @OptionField(OptionDeclaration<ConfigValue?>.free("include", "mapping: path → regex", "keep a record only when every field matches"),
                 read: { GrepPlugin.rules($0, "include") })
    public var include: [GrepRule] = []
    @OptionField(OptionDeclaration<ConfigValue?>.free("exclude", "mapping: path → regex", "drop a record when any field matches"),
                 read: { GrepPlugin.rules($0, "exclude") })
    public var exclude: [GrepRule] = []

    public init(include: [GrepRule] = [], exclude: [GrepRule] = []) {
        self.include = include
        self.exclude = exclude
    }

    public func build(_ context: ComponentContext) throws -> any Filter {
        GrepFilter(config: self, stats: context.stats)
    }
}

/// Stateless (the rules are immutable), so any number of input threads may run it at once.
public final class GrepFilter: Filter {
    let include: [GrepRule]
    let exclude: [GrepRule]
    let dropped: Counter

    init(config: GrepConfig, stats: ComponentStats) {
        include = config.include
        exclude = config.exclude
        dropped = stats.counter("records_dropped", "records removed by include/exclude rules")
    }

    public func process(_ batch: inout RecordBatch) {
        var scratch: [UInt8] = []
        var cache = SharedResults(include: include.count, exclude: exclude.count)
        // Kept records are compacted to the front in place; the arena is left as it is.
        var kept = 0
        for i in batch.records.indices where keep(batch, i, &scratch, &cache) {
            if kept != i { batch.records[kept] = batch.records[i] }
            kept += 1
        }
        let n = batch.records.count - kept
        if n > 0 {
            batch.records.removeLast(n)
            dropped.add(n)
        }
    }

    /// Per batch: each rule's result on the shared fields (`kubernetes.*`), the same for every
    /// record that does not carry the key itself; computed on first use.
    struct SharedResults {
        var include: [Bool?]
        var exclude: [Bool?]
        init(include: Int, exclude: Int) {
            self.include = Array(repeating: nil, count: include)
            self.exclude = Array(repeating: nil, count: exclude)
        }
    }

    func keep(_ batch: RecordBatch, _ i: Int, _ scratch: inout [UInt8], _ cache: inout SharedResults) -> Bool {
        for k in include.indices where !matches(include[k], batch, i, &scratch, &cache.include[k]) { return false }
        for k in exclude.indices where matches(exclude[k], batch, i, &scratch, &cache.exclude[k]) { return false }
        return true
    }

    func matches(_ rule: GrepRule, _ batch: RecordBatch, _ i: Int, _ scratch: inout [UInt8], _ shared: inout Bool?) -> Bool {
        if rule.path.kind == .field && !rule.path.inRecordFields(batch, i) {
            if let known = shared { return known }
            let m = rule.path.withSharedValue(batch, scratch: &scratch) { v in v.map { rule.pattern.matches($0) } ?? false }
            shared = m
            return m
        }
        return rule.path.withValue(batch, i, scratch: &scratch) { v in v.map { rule.pattern.matches($0) } ?? false }
    }
}

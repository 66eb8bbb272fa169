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

/// One configured component: its name, where it is written, and its typed options.
public struct ComponentDecl: Sendable {
    public enum Built: Sendable {
        case input(any InputConfig)
        case filter(any FilterConfig)
        case output(any OutputConfig)
    }
    public let name: String
    public let type: String
    public let kind: ComponentKind
    public let mark: SourceMark
    /// Upstream component names (`from:`); empty for inputs.
    public let from: [String]
    /// Where each name of `from` is written, to point at a wrong one.
    public let fromMarks: [SourceMark]
    public let config: Built
}

public enum LogFormatSetting: String, CaseIterable, Sendable { case text, json }
public enum LogLevelSetting: String, CaseIterable, Sendable { case trace, debug, info, notice, warning, error, critical }

/// The whole agent configuration after parsing and validation.
public struct AgentConfig: Sendable {
    public var file: String
    @OptionField(.path("data_dir", "checkpoints, disk buffers, dead letters (files 0600, folders 0700)"))
    public var dataDirectory = "./data"
    @OptionField(.choice("log_level", "the agent's own logs, on stderr"))
    public var logLevel = LogLevelSetting.info
    @OptionField(.choice("log_format", "the agent's own logs: text or one JSON object a line"))
    public var logFormat = LogFormatSetting.text
    /// How long a stop waits for outputs to deliver what was read before giving up (what is not
    /// delivered is not checkpointed, so it is read again at the next start).
    @OptionField(.duration("shutdown_timeout", 0...86_400, "how long a stop waits for outputs to deliver what was read (what is not delivered is read again at the next start)"))
    public var shutdownTimeout = 30.0
    /// `watch_config: true`: reload when the config file's content changes (as `run --watch-config`).
    @OptionField(.bool("watch_config", "reload when the config file's content changes (as `run --watch-config`; a ConfigMap update too)"))
    public var watchConfig = false
    /// `api:`: the HTTP API (metrics, health, ready, and /tap when enabled); off when absent.
    @OptionField(group: "api", "the HTTP API; off when absent", APIOptions.table)
    public var api: APIOptions? = nil
    /// Where /metrics, /health and /ready listen, when the API is on.
    public var apiAddress: String? { api?.address }
    // The component sections: declared here, read by `parse` itself (into `components`).
    @OptionField(declared: .free("inputs", "mapping: name → input", "`<name>: {type: ..., ...}`"), default: nil)
    var inputs: Void
    @OptionField(declared: .free("filters", "mapping: name → filter", "`<name>: {type: ..., from: [<input or filter>, ...], ...}`"), default: nil)
    var filters: Void
    @OptionField(declared: .free("outputs", "mapping: name → output", "`<name>: {type: ..., from: [<input or filter>, ...], ...}`"), default: nil)
    var outputs: Void
    public var components: [ComponentDecl]
    /// Every setting as written (`outputs.es.batch.max_records` → `500`), for the reload's log line.
    public var settings: [String: String] = [:]

    public func components(_ kind: ComponentKind) -> [ComponentDecl] { components.filter { $0.kind == kind } }

    /// Reads and validates a config file. Returns the config, or every problem found.
    public static func load(path: String, registry: PluginRegistry,
                            environment: [String: String] = ProcessInfo.processInfo.environment)
        -> Result<AgentConfig, ConfigErrors> {
        let bytes: [UInt8]
        switch readConfigBytes(path) {
        case .success(let b): bytes = b
        case .failure(let problem):
            let d = ConfigDiagnostic(SourceMark(file: path, line: 1, column: 1), "cannot read config file: \(problem.message)")
            return .failure(ConfigErrors(items: [d]))
        }
        // Checked as bytes first: decoding would silently replace what is not UTF-8.
        if let problem = ConfigText.check(bytes, file: path) {
            return .failure(ConfigErrors(items: [problem]))
        }
        return parse(yaml: String(decoding: bytes, as: UTF8.self), file: path, registry: registry, environment: environment)
    }

    public static func parse(yaml: String, file: String, registry: PluginRegistry,
                             environment: [String: String]) -> Result<AgentConfig, ConfigErrors> {
        let diags = Diagnostics()
        guard let root = ConfigValue.parse(yaml: yaml, file: file, environment: environment, diagnostics: diags) else {
            return .failure(ConfigErrors(items: diags.sorted))
        }
        // Relative paths in the config are relative to the config file, so `anduin run` works from anywhere.
        let baseDir = absoluteDirectory(of: file)
        let top = ConfigReader(root, context: "config", diagnostics: diags, baseDirectory: baseDir, options: options)
        var cfg = table.defaults
        table.read(top, into: &cfg)
        // After the read: a table of fields starts from a new config of its own.
        cfg.file = file
        cfg.settings = ConfigDiff.flatten(root)
        if let problem = DataDirectory.problem(cfg.dataDirectory, checkCreatable: false) {
            top.error(top.has("data_dir") ? "data_dir" : nil,
                      "data_dir \(cfg.dataDirectory) cannot hold checkpoints and buffers: \(problem)")
        }

        var names: [String: SourceMark] = [:]
        // Every declared component, valid or not: an invalid one is reported once, not again by
        // every `from:` that names it.
        var declared: [String: ComponentKind] = [:]
        // The graph as written, invalid components included: their `from:` still consumes and is
        // still checked, so fixing one error does not reveal another.
        var nodes: [GraphNode] = []
        for kind in ComponentKind.allCases {
            guard let section = top.value(kind.section) else { continue }
            guard case .mapping(let entries, _) = section else {
                diags.error(section.mark, "\(kind.section): expected a mapping of component names to their options, got \(section.kindName)")
                continue
            }
            for entry in entries {
                if let first = names[entry.key] {
                    diags.error(entry.keyMark, "component name \"\(entry.key)\" is used twice (first at line \(first.line)); names must be unique across inputs, filters and outputs")
                    continue
                }
                names[entry.key] = entry.keyMark
                declared[entry.key] = kind
                if entry.key.isEmpty || entry.key.contains(where: { !($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") }) {
                    diags.error(entry.keyMark, "component name \"\(entry.key)\": use letters, digits, '_' and '-' only (it names a folder under data_dir)")
                }
                if let decl = component(kind: kind, name: entry.key, keyMark: entry.keyMark, value: entry.value,
                                        registry: registry, diags: diags, baseDir: baseDir) {
                    cfg.components.append(decl)
                }
                if case .mapping = entry.value {
                    let (from, marks) = kind == .input ? ([], []) : fromNames(entry.value, context: "", diags: nil)
                    nodes.append(GraphNode(name: entry.key, kind: kind, mark: entry.keyMark, from: from, fromMarks: marks))
                }
            }
        }
        top.finish()
        validateGraph(cfg, nodes: nodes, declared: declared, diags: diags)
        if !diags.isEmpty { return .failure(ConfigErrors(items: diags.sorted)) }
        return .success(cfg)
    }

    private static func component(kind: ComponentKind, name: String, keyMark: SourceMark, value: ConfigValue,
                                  registry: PluginRegistry, diags: Diagnostics, baseDir: String) -> ComponentDecl? {
        let context = "\(kind.rawValue) \"\(name)\""
        let reader = ConfigReader(value, context: context, diagnostics: diags, baseDirectory: baseDir)
        guard case .mapping = value else { return nil }
        guard let type = reader.requiredString("type", hint: " (one of: \(registry.types(kind).joined(separator: ", ")))") else {
            return nil
        }
        guard let spec = registry.spec(kind, type) else {
            var msg = "\(context): unknown \(kind.rawValue) type \"\(type)\""
            if let guess = closest(type, in: registry.types(kind)) { msg += " (did you mean \"\(guess)\"?)" }
            msg += "; known \(kind.rawValue) types: \(registry.types(kind).joined(separator: ", "))"
            if let other = ComponentKind.allCases.first(where: { $0 != kind && registry.spec($0, type) != nil }) {
                msg += "; \"\(type)\" is an \(other.rawValue): put it under \(other.section):"
            }
            diags.error(reader.markOf("type"), msg)
            return nil
        }
        let typed = ConfigReader(value, context: "\(context) (\(type))", diagnostics: diags, baseDirectory: baseDir,
                                 options: componentOptions(kind) + spec.allOptions)
        _ = typed.value("type")
        var from: [String] = []
        var fromMarks: [SourceMark] = []
        if kind != .input {
            _ = typed.value("from")  // known key; read (and its shape checked) below
            (from, fromMarks) = fromNames(value, context: context, diags: diags)
        }
        let built: ComponentDecl.Built?
        let before = diags.items.count
        switch spec.configure {
        case .input(let parse): built = parse(typed).map { .input($0) }
        case .filter(let parse): built = parse(typed).map { .filter($0) }
        case .output(let parse): built = parse(typed).map { .output($0) }
        }
        typed.finish()
        guard let built, diags.items.count == before else { return nil }
        return ComponentDecl(name: name, type: type, kind: kind, mark: keyMark, from: from, fromMarks: fromMarks,
                             config: built)
    }

    /// A component as the graph check sees it: declared, whether or not its options are valid.
    struct GraphNode {
        let name: String
        let kind: ComponentKind
        let mark: SourceMark
        let from: [String]
        let fromMarks: [SourceMark]
    }

    /// The names in a component's `from:` and where each is written; shape problems go to `diags`
    /// when given (once per component: the graph check reads it again quietly).
    private static func fromNames(_ value: ConfigValue, context: String, diags: Diagnostics?) -> ([String], [SourceMark]) {
        guard case .mapping(let entries, _) = value, let v = entries.first(where: { $0.key == "from" })?.value else {
            return ([], [])
        }
        var from: [String] = []
        var marks: [SourceMark] = []
        switch v {
        case .scalar(let s, let m, _):
            from = [s]
            marks = [m]
        case .sequence(let items, _):
            for item in items {
                if case .scalar(let s, let m, _) = item {
                    from.append(s)
                    marks.append(m)
                } else {
                    diags?.error(item.mark, "\(context): from: expected component names, got \(item.kindName)")
                }
            }
        default:
            diags?.error(v.mark, "\(context): from: expected a list of component names, got \(v.kindName)")
        }
        return (from, marks)
    }

    /// The top level's options (the fields); the component sections are read by `parse` itself.
    static let table = OptionTable(fields: AgentConfig(file: "", components: []))
    public static let options: [OptionSpec] = table.options

    /// The keys every component has besides its plugin's options.
    static func componentOptions(_ kind: ComponentKind) -> [OptionSpec] {
        var keys = [OptionSpec(key: "type", kind: .string, defaultText: "(required)", doc: "the plugin")]
        if kind != .input {
            keys.append(OptionSpec(key: "from", kind: .list, defaultText: "(required)", doc: "the inputs and filters it reads"))
        }
        return keys
    }

    private static func validateGraph(_ cfg: AgentConfig, nodes: [GraphNode], declared: [String: ComponentKind],
                                      diags: Diagnostics) {
        if !declared.values.contains(.input) {
            diags.error(SourceMark(file: cfg.file, line: 1, column: 1), "config has no inputs: add one under inputs:")
        }
        if !declared.values.contains(.output) {
            diags.error(SourceMark(file: cfg.file, line: 1, column: 1), "config has no outputs: add one under outputs:")
        }
        var consumed = Set<String>()
        for c in nodes where c.kind != .input {
            if c.from.isEmpty {
                diags.error(c.mark, "\(c.kind.rawValue) \"\(c.name)\" has no inputs: add from: [<input or filter name>]")
            }
            for (upstream, at) in zip(c.from, c.fromMarks) {
                consumed.insert(upstream)
                switch declared[upstream] {
                case .input?, .filter?:
                    continue
                case .output?:
                    diags.error(at, "\(c.kind.rawValue) \"\(c.name)\": from: names output \"\(upstream)\"; outputs cannot feed other components")
                case nil:
                    var msg = "\(c.kind.rawValue) \"\(c.name)\": from: names \"\(upstream)\", which is not an input or filter"
                    let candidates = nodes.filter { $0.kind != .output }.map(\.name)
                    if let guess = closest(upstream, in: candidates) { msg += " (did you mean \"\(guess)\"?)" }
                    diags.error(at, msg)
                }
            }
        }
        // Records of a component nothing reads would be read, dropped and checkpointed: lost for good
        // once a later config wires it up. Every input and filter feeding something, and no cycle
        // (below), means every record reaches an output.
        let outputs = nodes.filter { $0.kind == .output }.map(\.name)
        for c in nodes where c.kind != .output && !consumed.contains(c.name) {
            var msg = "\(c.kind.rawValue) \"\(c.name)\": nothing reads its records (no filter or output names it in from:)"
            if let o = outputs.first, outputs.count == 1 {
                msg += "; add \"\(c.name)\" to the from: of output \"\(o)\""
            } else {
                msg += "; add \"\(c.name)\" to the from: of an output"
            }
            msg += c.kind == .input ? " or of a filter, or remove the input" : " or of another filter, or remove the filter"
            diags.error(c.mark, msg)
        }
        // Cycles can only run through filters.
        let byName = Dictionary(nodes.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        var state: [String: Int] = [:]  // 1 = on the current path, 2 = done
        var reported = Set<String>()
        func visit(_ name: String, path: [String]) {
            guard let c = byName[name], c.kind == .filter else { return }
            if state[name] == 2 { return }
            if state[name] == 1 {
                let cycle = path.drop(while: { $0 != name }) + [name]
                if reported.insert(cycle.sorted().joined()).inserted {
                    diags.error(c.mark, "filter \"\(name)\": from: forms a cycle: \(cycle.joined(separator: " -> "))")
                }
                return
            }
            state[name] = 1
            for u in c.from { visit(u, path: path + [name]) }
            state[name] = 2
        }
        for c in nodes where c.kind == .filter { visit(c.name, path: []) }
    }

    static func absoluteDirectory(of file: String) -> String {
        let dir = parentDirectory(of: file)
        if dir.hasPrefix("/") { return dir }
        let cwd = FileManager.default.currentDirectoryPath
        return dir.isEmpty ? cwd : joinPath(cwd, dir)
    }
}

/// Every problem of a config, in file order.
public struct ConfigErrors: Error, Sendable, CustomStringConvertible {
    public var items: [ConfigDiagnostic]
    public var description: String { items.map(\.description).joined(separator: "\n") }
}

/// At most `ConfigText.maximumBytes + 1` bytes of the file (so `/dev/zero` or a huge file is
/// refused, not read forever), or why it cannot be read.
func readConfigBytes(_ path: String) -> Result<[UInt8], ConfigProblem> {
    // O_NONBLOCK: opening a FIFO nobody writes to would wait forever. Reads block again below (a
    // pipe given on purpose, /dev/stdin, is read to its end).
    let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
    guard fd >= 0 else { return .failure(ConfigProblem(String(cString: strerror(errno)))) }
    defer { close(fd) }
    _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
    var st = stat()
    if fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR {
        return .failure(ConfigProblem("it is a directory"))
    }
    let limit = ConfigText.maximumBytes + 1
    var out = [UInt8](repeating: 0, count: limit)
    var filled = 0
    while filled < limit {
        let n = out.withUnsafeMutableBytes { buf -> Int in
            guard let base = buf.baseAddress else { return 0 }
            return read(fd, base + filled, limit - filled)
        }
        if n < 0 {
            if errno == EINTR { continue }
            return .failure(ConfigProblem(String(cString: strerror(errno))))
        }
        if n == 0 { break }
        filled += n
    }
    out.removeSubrange(filled...)
    return .success(out)
}

public func describeFileError(_ error: Error) -> String {
    if let e = error as? CocoaError {
        if let posix = e.underlying as? POSIXError { return String(cString: strerror(posix.code.rawValue)) }
        if e.code == .fileReadNoSuchFile { return "no such file" }
    }
    if let posix = error as? POSIXError { return String(cString: strerror(posix.code.rawValue)) }
    return "\(error)"
}

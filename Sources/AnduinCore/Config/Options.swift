/// Each option of a component (or of the agent's top level) is declared once, as a `ConfigKey`: its key,
/// type, default, allowed range and meaning, made by the `@OptionField` of the config field it fills
/// (`OptionDeclaration`, with the field's initial value as the default). From that one declaration come its parsing and range check
/// (`ConfigReader.get`), the unknown-key check (a key is unknown when it is not declared, whatever the
/// parser read), `validate`'s did-you-mean suggestions, and the README's reference tables
/// (`anduin config reference`). Fluent Bit's `config_map[]` and Vector's typed config structs do the
/// same job.

/// What kind of value an option takes.
public indirect enum OptionKind: Sendable {
    case string
    /// A string of a given form (`shape`, e.g. `rate such as 1000/s`) the plugin checks itself.
    case text(String)
    /// A file path or glob, made absolute against the config file's folder.
    case path
    case bool
    /// A value that must never be shown (`Secret`).
    case secret
    case int(ClosedRange<Int>)
    case size(ClosedRange<Int>)
    /// Seconds.
    case duration(ClosedRange<Double>)
    case choice([String])
    case list
    case pathList
    /// A mapping or other value whose shape the plugin checks itself (`headers`, `set`, `include`).
    case free(String)
    /// Nested options (`batch`, `retry`, `tls`, ...).
    case group([OptionSpec])

    /// Values of this option are never quoted in messages.
    public var isSecret: Bool {
        switch self {
        case .secret: return true
        case .free(let shape): return shape.contains("secret")
        default: return false
        }
    }

    /// How the reference names the type.
    public var typeName: String {
        switch self {
        case .string: return "string"
        case .text(let shape): return shape
        case .path: return "path"
        case .bool: return "bool"
        case .secret: return "secret"
        case .int(let r): return "integer \(r.lowerBound)–\(Self.count(r.upperBound))"
        case .size(let r): return "size \(ByteSize.format(r.lowerBound))–\(ByteSize.format(r.upperBound))"
        case .duration(let r): return "duration \(DurationText.format(r.lowerBound))–\(DurationText.format(r.upperBound))"
        case .choice(let words): return words.joined(separator: " | ")
        case .list: return "list of strings"
        case .pathList: return "list of paths"
        case .free(let shape): return shape
        case .group: return "mapping"
        }
    }

    private static func count(_ n: Int) -> String {
        var s = String(n), out = ""
        while s.count > 3 {
            out = "," + s.suffix(3) + out
            s.removeLast(3)
        }
        return s + out
    }
}

/// The untyped part of a declaration: what the reference and the unknown-key check need.
public struct OptionSpec: Sendable {
    public let key: String
    public let kind: OptionKind
    /// The default as the reference shows it (`(required)`, empty when absent means off).
    public let defaultText: String
    public let doc: String

    public init(key: String, kind: OptionKind, defaultText: String, doc: String) {
        self.key = key
        self.kind = kind
        self.defaultText = defaultText
        self.doc = doc
    }

    /// A required option shows `(required)` as its default.
    public var required: Bool { defaultText == "(required)" }

    /// The options of a group, or nil.
    public var children: [OptionSpec]? {
        if case .group(let c) = kind { return c }
        return nil
    }
}

/// One declared option with its typed default. Read it with `ConfigReader.get(_:)`, or bind it to a
/// field of the plugin's config struct in an `OptionTable`.
public struct ConfigKey<Value: Sendable>: Sendable {
    public let spec: OptionSpec
    public let defaultValue: Value
    public var key: String { spec.key }
    /// The `ConfigReader.get` overload for `Value`, chosen where the type is known (the constructors
    /// below), so that a generic `OptionField` can read any key.
    let read: @Sendable (ConfigReader, ConfigKey<Value>) -> Value

    init(_ key: String, _ kind: OptionKind, default d: Value, defaultText: String, _ doc: String,
         read: @escaping @Sendable (ConfigReader, ConfigKey<Value>) -> Value) {
        spec = OptionSpec(key: key, kind: kind, defaultText: defaultText, doc: doc)
        defaultValue = d
        self.read = read
    }
}

/// Durations an option may take unless it says otherwise: longer ones are mistakes (and would
/// overflow the nanosecond clocks they end up in).
public let defaultDurationRange: ClosedRange<Double> = 0...(7 * 86_400)
/// Sizes an option may take unless it says otherwise.
public let defaultSizeRange: ClosedRange<Int> = 0...(1 << 40)

public extension ConfigKey where Value == Int {
    static func int(_ key: String, default d: Int, _ range: ClosedRange<Int>, _ doc: String,
                    defaultText: String? = nil) -> Self {
        Self(key, .int(range), default: d, defaultText: defaultText ?? String(d), doc, read: { $0.get($1) })
    }
    static func size(_ key: String, default d: Int, _ range: ClosedRange<Int>, _ doc: String,
                     defaultText: String? = nil) -> Self {
        Self(key, .size(range), default: d, defaultText: defaultText ?? ByteSize.format(d), doc, read: { $0.get($1) })
    }
}

public extension ConfigKey where Value == Double {
    static func duration(_ key: String, default d: Double, _ range: ClosedRange<Double>,
                         _ doc: String, defaultText: String? = nil) -> Self {
        Self(key, .duration(range), default: d, defaultText: defaultText ?? DurationText.format(d), doc, read: { $0.get($1) })
    }
}

public extension ConfigKey where Value == Bool {
    static func bool(_ key: String, default d: Bool, _ doc: String) -> Self {
        Self(key, .bool, default: d, defaultText: String(d), doc, read: { $0.get($1) })
    }
}

public extension ConfigKey where Value == String {
    static func string(_ key: String, default d: String, _ doc: String, defaultText: String? = nil) -> Self {
        Self(key, .string, default: d, defaultText: defaultText ?? d, doc, read: { $0.get($1) })
    }
    static func path(_ key: String, default d: String, _ doc: String) -> Self {
        Self(key, .path, default: d, defaultText: d, doc, read: { $0.get($1) })
    }
}

public extension ConfigKey where Value == String? {
    /// An optional string; `required` reports its absence.
    static func string(_ key: String, required: Bool = false, _ doc: String, defaultText: String = "") -> Self {
        Self(key, .string, default: nil, defaultText: required ? "(required)" : defaultText, doc, read: { $0.get($1) })
    }
    /// A string of a particular form, which the plugin checks.
    static func text(_ key: String, _ shape: String, required: Bool = false, _ doc: String, defaultText: String = "") -> Self {
        Self(key, .text(shape), default: nil, defaultText: required ? "(required)" : defaultText, doc, read: { $0.get($1) })
    }
    static func path(_ key: String, required: Bool = false, _ doc: String, defaultText: String = "") -> Self {
        Self(key, .path, default: nil, defaultText: required ? "(required)" : defaultText, doc, read: { $0.get($1) })
    }
}

public extension ConfigKey where Value == Secret? {
    static func secret(_ key: String, _ doc: String) -> Self {
        Self(key, .secret, default: nil, defaultText: "", doc, read: { $0.get($1) })
    }
}

public extension ConfigKey where Value == [String] {
    static func list(_ key: String, default d: [String] = [], required: Bool = false, _ doc: String,
                     defaultText: String? = nil) -> Self {
        Self(key, .list, default: d, defaultText: required ? "(required)" : defaultText ?? "[\(d.joined(separator: ", "))]", doc, read: { $0.get($1) })
    }
    static func pathList(_ key: String, required: Bool = false, _ doc: String) -> Self {
        Self(key, .pathList, default: [], defaultText: required ? "(required)" : "[]", doc, read: { $0.get($1) })
    }
}

public extension ConfigKey where Value: RawRepresentable & CaseIterable, Value.RawValue == String {
    static func choice(_ key: String, default d: Value, _ doc: String) -> Self {
        Self(key, .choice(Value.allCases.map(\.rawValue)), default: d, defaultText: d.rawValue, doc, read: { $0.get($1) })
    }
}

public extension ConfigKey where Value == ConfigValue? {
    /// A value the plugin reads itself (`shape` says what it looks like in the reference).
    static func free(_ key: String, _ shape: String, required: Bool = false, _ doc: String,
                     defaultText: String = "") -> Self {
        Self(key, .free(shape), default: nil, defaultText: required ? "(required)" : defaultText, doc, read: { $0.get($1) })
    }
}

/// Options several plugin types share, documented in one table (`name` in `anduin config reference --type`).
public struct OptionSection: Sendable {
    public let name: String
    public let options: [OptionSpec]
    public init(name: String, options: [OptionSpec]) {
        self.name = name
        self.options = options
    }
}

/// A group of nested options: `batch: {max_records: ..., timeout: ...}`. Read with `ConfigReader.group(_:)`.
public struct ConfigGroup: Sendable {
    public let spec: OptionSpec
    public var key: String { spec.key }
    public init(_ key: String, _ doc: String, defaultText: String = "", _ options: [OptionSpec]) {
        spec = OptionSpec(key: key, kind: .group(options), defaultText: defaultText, doc: doc)
    }
}

/// A field of a plugin's config struct that is also the declaration of its option, so that adding an
/// option is one line:
///
///     @OptionField(.duration("poll_interval", 0.001...3600, "poll mode, ...")) public var pollInterval = 0.25
///
/// The initial value is the option's default (and its reference text, `0.25s`). `OptionTable(fields:)`
/// finds the fields with `Mirror`, in declaration order, for the option list and the parsing.
///
/// The value lives in an `OptionBox`. Setting the field gives it a new box, so the struct keeps value
/// semantics (a copy does not see the change). The table needs the box because `Mirror` gives it copies
/// of the fields, not their key paths: it reads each option into the box of a config it has just made.
@propertyWrapper
public struct OptionField<Value: Sendable>: Sendable {
    private var box: OptionBox<Value>
    /// The declaration, completed with the field's initial value as its default.
    public let spec: OptionSpec
    /// Reads the option into the value (which holds the default; absent options leave it as it is).
    private let read: @Sendable (ConfigReader, inout Value) -> Void

    public var wrappedValue: Value {
        get { box.value }
        // A new box: copies of the struct made before still share the old one.
        set { box = OptionBox(newValue) }
    }

    /// The option `declaration` declares, with the field's initial value as its default.
    public init(wrappedValue: Value, _ declaration: OptionDeclaration<Value>) {
        let key = declaration.key(wrappedValue)
        self.init(wrappedValue, key.spec) { r, v in v = key.read(r, key) }
    }

    /// The option's value after `adjust` (which may check it and report on the reader).
    public init(wrappedValue: Value, _ declaration: OptionDeclaration<Value>,
                adjust: @escaping @Sendable (ConfigReader, Value) -> Value) {
        let key = declaration.key(wrappedValue)
        self.init(wrappedValue, key.spec) { r, v in v = adjust(r, key.read(r, key)) }
    }

    /// An option declared by `declaration` (for the reference and the unknown-key check) that `read`
    /// reads itself, reporting its own problems (`read` is called whether the key is there or not).
    public init(wrappedValue: Value, _ declaration: OptionDeclaration<Value>,
                read: @escaping @Sendable (ConfigReader) -> Value) {
        self.init(wrappedValue, declaration.key(wrappedValue).spec) { r, v in v = read(r) }
    }

    /// An option of a different type from the field (a mapping read into rules), declared by
    /// `declaration` (whose default is nil) for the reference and the unknown-key check, and read by
    /// `read`, which reports its own problems (`read` is called whether the key is there or not).
    public init<Declared>(wrappedValue: Value, _ declaration: OptionDeclaration<Declared?>,
                          read: @escaping @Sendable (ConfigReader) -> Value) {
        self.init(wrappedValue, declaration.key(nil).spec) { r, v in v = read(r) }
    }

    /// An option of a different type from the field (a name read into an enum, a regex compiled),
    /// declared by `declaration` (whose default is nil) and turned into the field's value by `adjust`
    /// (which may check it and report on the reader); `adjust` returning nil keeps the initial value.
    public init<Declared>(wrappedValue: Value, _ declaration: OptionDeclaration<Declared?>,
                          adjust: @escaping @Sendable (ConfigReader, Declared?) -> Value?) {
        let key = declaration.key(nil)
        self.init(wrappedValue, key.spec) { r, v in
            if let value = adjust(r, key.read(r, key)) { v = value }
        }
    }

    /// An optional group of nested options read by their own table: nil (the initial value) when the
    /// group is not written, or when it was written with problems (reported).
    public init<Group: Sendable>(wrappedValue: Value, group key: String, _ doc: String, defaultText: String = "",
                                 _ table: OptionTable<Group>) where Value == Group? {
        let group = ConfigGroup(key, doc, defaultText: defaultText, table.options)
        self.init(wrappedValue, group.spec) { r, v in
            if let g = r.group(group) { v = table.parse(g) }
        }
    }

    /// A group of nested options read by their own table; the field keeps its initial value when the
    /// group is not written.
    public init(wrappedValue: Value, group key: String, _ doc: String, defaultText: String = "",
                _ table: OptionTable<Value>) {
        let group = ConfigGroup(key, doc, defaultText: defaultText, table.options)
        self.init(wrappedValue, group.spec) { r, v in
            if let g = r.group(group) { table.read(g, into: &v) }
        }
    }

    /// A group of nested options read by their own table and turned into the field's value by
    /// `make` (given the group's reader, to report on, and the value the group replaces); the field
    /// keeps its value when the group is not written, or was written with problems (reported).
    public init<Group: Sendable>(wrappedValue: Value, group key: String, _ doc: String, defaultText: String = "",
                                 _ table: OptionTable<Group>,
                                 make: @escaping @Sendable (_ group: Group, _ reader: ConfigReader, _ replaced: Value) -> Value) {
        let group = ConfigGroup(key, doc, defaultText: defaultText, table.options)
        self.init(wrappedValue, group.spec) { r, v in
            if let g = r.group(group), let settings = table.parse(g) { v = make(settings, g, v) }
        }
    }

    /// The group a type of options always is (`metadata:` on every output); the field keeps its
    /// initial value when the group is not written.
    public init(wrappedValue: Value, group: Value.Type) where Value: SharedOptionGroup {
        self.init(wrappedValue, Value.group.spec) { r, v in
            if let g = r.group(Value.group) { Value.table.read(g, into: &v) }
        }
    }

    private init(_ value: Value, _ spec: OptionSpec, _ read: @escaping @Sendable (ConfigReader, inout Value) -> Void) {
        box = OptionBox(value)
        self.spec = spec
        self.read = read
    }
}

/// A struct of options that is the same group wherever it is a field (`@OptionField(group: T.self)`).
public protocol SharedOptionGroup: Sendable {
    /// The group's declaration, with `table.options`.
    static var group: ConfigGroup { get }
    static var table: OptionTable<Self> { get }
}

/// The storage of one `OptionField`, shared by copies of a config.
///
/// Invariant (why it may be `@unchecked Sendable`): `value` is written only by `OptionTable`, while it
/// reads options into a config it has itself just made and not yet returned, whose boxes nothing else
/// references (`OptionField.load`). Setting a field replaces its box and never writes into one. So a
/// box that more than one config (or thread) can reach is never written.
final class OptionBox<Value: Sendable>: @unchecked Sendable {
    var value: Value
    init(_ value: Value) { self.value = value }
}

/// What `OptionTable` sees of an `OptionField` through `Mirror`.
protocol MirroredOptionField {
    var spec: OptionSpec { get }
    /// Reads the option into the field's box. Only for `OptionTable`, on a config it has just made
    /// (see `OptionBox`).
    func load(_ reader: ConfigReader)
}

extension OptionField: MirroredOptionField {
    func load(_ reader: ConfigReader) { read(reader, &box.value) }
}

/// An option's declaration without its default (key, kind, range, meaning, like `ConfigKey`'s
/// constructors): `OptionField` completes it with the field's initial value, so the default is
/// written once.
public struct OptionDeclaration<Value: Sendable>: Sendable {
    let key: @Sendable (_ default: Value) -> ConfigKey<Value>
    init(_ key: @escaping @Sendable (_ default: Value) -> ConfigKey<Value>) { self.key = key }
}

public extension OptionDeclaration where Value == Int {
    static func int(_ key: String, _ range: ClosedRange<Int>, _ doc: String, defaultText: String? = nil) -> Self {
        Self { .int(key, default: $0, range, doc, defaultText: defaultText) }
    }
    static func size(_ key: String, _ range: ClosedRange<Int>, _ doc: String, defaultText: String? = nil) -> Self {
        Self { .size(key, default: $0, range, doc, defaultText: defaultText) }
    }
}

public extension OptionDeclaration where Value == Double {
    static func duration(_ key: String, _ range: ClosedRange<Double>, _ doc: String, defaultText: String? = nil) -> Self {
        Self { .duration(key, default: $0, range, doc, defaultText: defaultText) }
    }
}

public extension OptionDeclaration where Value == Bool {
    static func bool(_ key: String, _ doc: String) -> Self { Self { .bool(key, default: $0, doc) } }
}

public extension OptionDeclaration where Value == String {
    static func string(_ key: String, _ doc: String, defaultText: String? = nil) -> Self {
        Self { .string(key, default: $0, doc, defaultText: defaultText) }
    }
    static func path(_ key: String, _ doc: String) -> Self { Self { .path(key, default: $0, doc) } }
}

public extension OptionDeclaration where Value == String? {
    /// An optional string; `required` reports its absence. An initial value other than nil is the
    /// value when the key is absent.
    static func string(_ key: String, required: Bool = false, _ doc: String, defaultText: String? = nil) -> Self {
        Self { ConfigKey(key, .string, default: $0, defaultText: Self.text(required, defaultText, $0), doc, read: { $0.get($1) }) }
    }
    /// A string of a particular form, which the plugin checks.
    static func text(_ key: String, _ shape: String, required: Bool = false, _ doc: String, defaultText: String? = nil) -> Self {
        Self { ConfigKey(key, .text(shape), default: $0, defaultText: Self.text(required, defaultText, $0), doc, read: { $0.get($1) }) }
    }
    static func path(_ key: String, required: Bool = false, _ doc: String, defaultText: String? = nil) -> Self {
        Self { ConfigKey(key, .path, default: $0, defaultText: Self.text(required, defaultText, $0), doc, read: { $0.get($1) }) }
    }
    private static func text(_ required: Bool, _ given: String?, _ d: String?) -> String {
        required ? "(required)" : given ?? d ?? ""
    }
}

public extension OptionDeclaration where Value == Secret? {
    static func secret(_ key: String, _ doc: String) -> Self {
        Self { ConfigKey(key, .secret, default: $0, defaultText: "", doc, read: { $0.get($1) }) }
    }
}

public extension OptionDeclaration where Value == [String] {
    static func list(_ key: String, required: Bool = false, _ doc: String, defaultText: String? = nil) -> Self {
        Self { .list(key, default: $0, required: required, doc, defaultText: defaultText) }
    }
    static func pathList(_ key: String, required: Bool = false, _ doc: String) -> Self {
        Self { d in
            ConfigKey(key, .pathList, default: d, defaultText: required ? "(required)" : "[\(d.joined(separator: ", "))]",
                      doc, read: { $0.get($1) })
        }
    }
}

public extension OptionDeclaration where Value: RawRepresentable & CaseIterable, Value.RawValue == String {
    static func choice(_ key: String, _ doc: String) -> Self { Self { .choice(key, default: $0, doc) } }
}

public extension OptionDeclaration where Value == ConfigValue? {
    /// A value the plugin reads itself (`shape` says what it looks like in the reference).
    static func free(_ key: String, _ shape: String, required: Bool = false, _ doc: String, defaultText: String = "") -> Self {
        Self { ConfigKey(key, .free(shape), default: $0, defaultText: required ? "(required)" : defaultText, doc, read: { $0.get($1) }) }
    }
}

/// Configs are compared by their values (a reload compares the old and new `api:` options).
extension OptionField: Equatable where Value: Equatable {
    public static func == (a: Self, b: Self) -> Bool { a.wrappedValue == b.wrappedValue }
}

public extension OptionField {
    /// An option of a different type from the field (seconds kept as an `Int`), its declared default `declared(initial value)`, turned into the field's value by `adjust`.
    init<Declared>(wrappedValue: Value, _ declaration: OptionDeclaration<Declared>, declared: (Value) -> Declared,
                   adjust: @escaping @Sendable (ConfigReader, Declared) -> Value) {
        let key = declaration.key(declared(wrappedValue))
        self.init(wrappedValue, key.spec) { r, v in v = adjust(r, key.read(r, key)) }
    }

    /// An option only declared by the field (reference, unknown keys), `default` its declared default: the table's check reads it.
    init<Declared>(declared declaration: OptionDeclaration<Declared>, default: Declared) where Value == Void {
        self.init((), declaration.key(`default`).spec) { _, _ in }
    }
}

/// A plugin's options as one table (Fluent Bit's `config_map[]`): each row is a declared option and
/// how its value reaches the plugin's config struct. The option list (unknown keys, did-you-mean, the
/// README's tables) and the parsing both come from the rows. A table is made one of two ways (the
/// `tail` input, its `multiline:` group (`MultilineSettings`) and the `grep` filter use the first; the
/// other plugins still write rows):
///
/// - From the struct's fields (`init(fields:)`), when every option is an `@OptionField`: the field is
///   at once the stored value, its default (its initial value) and its declaration, so adding an
///   option is one line. The rows are the struct's `@OptionField`s in declaration order (`Mirror`),
///   and the parsing makes a new struct and reads each option into its field.
///
///       public struct TailConfig: InputConfig {
///           @OptionField(.duration("poll_interval", 0.001...3600, "...")) public var pollInterval = 0.25
///           ...
///           static let table = OptionTable(fields: TailConfig(paths: []))
///       }
///
/// - From rows written out (`init(_:check:_:)`): each row binds a declaration (`ConfigKey` or
///   `ConfigGroup`) to the field it fills, by key path (Fluent Bit's `offsetof`). Defaults come from
///   the struct's own field values (`defaults`, passed to the rows as `d`), so adding an option is its
///   field (with its default) and its row.
///
///       static let table = OptionTable(FileOutputConfig(path: "")) { d in [
///           .key(.bool("fsync", default: d.fsync, "..."), \.fsync),
///           ...
///       ]}
public struct OptionTable<Config: Sendable>: Sendable {
    public let rows: [Row]
    /// Every field at its default (a new value each time, for a table of fields).
    public var defaults: Config { make() }
    private let make: @Sendable () -> Config
    /// The rows are `@OptionField`s (`init(fields:)`): reading starts from a config made by `make`,
    /// the only one whose boxes the rows may write into (see `OptionBox`).
    private let ofFields: Bool
    /// Checks between options (one excludes another...), after every row was read; told whether the
    /// rows reported nothing (a "give at least one of" message is noise after a bad value).
    public typealias Check = @Sendable (_ reader: ConfigReader, _ config: inout Config, _ rowsClean: Bool) -> Void
    let check: Check?

    public init(_ defaults: Config, check: Check? = nil,
                _ rows: (Config) -> [Row]) {
        make = { defaults }
        ofFields = false
        self.rows = rows(defaults)
        self.check = check
    }

    /// The table of a struct's `@OptionField`s, in declaration order; `config` must make a new value
    /// each time (a call of the struct's initializer), for its fields' boxes to be its own. Other
    /// stored fields are not options: a parsed config has them as `config` makes them.
    public init(fields config: @escaping @autoclosure @Sendable () -> Config, check: Check? = nil) {
        make = config
        ofFields = true
        rows = Mirror(reflecting: config()).children.compactMap { child in
            guard let label = child.label, let field = child.value as? any MirroredOptionField else { return nil }
            return Row.field(label, field.spec)
        }
        self.check = check
    }

    /// The declarations, in table order.
    public var options: [OptionSpec] { rows.map(\.spec) }

    /// Reads every row into `config`, reporting problems on `reader`; a row whose key is absent sets
    /// its default. A table of fields first replaces `config` with a new one (`defaults`): it writes
    /// only into a config it has made.
    public func read(_ reader: ConfigReader, into config: inout Config) {
        let errorsBefore = reader.diagnostics.items.count
        if ofFields { config = make() }
        for row in rows { row.read(reader, &config) }
        check?(reader, &config, reader.diagnostics.items.count == errorsBefore)
    }

    /// `defaults` with every option read from `reader`, or nil when anything was reported.
    public func parse(_ reader: ConfigReader) -> Config? {
        let errorsBefore = reader.diagnostics.items.count
        var config = defaults
        read(reader, into: &config)
        return reader.diagnostics.items.count == errorsBefore ? config : nil
    }

    /// One option and where its value goes.
    public struct Row: Sendable {
        public let spec: OptionSpec
        let read: @Sendable (ConfigReader, inout Config) -> Void

        /// A row that reads its value itself (a mapping the plugin checks, several fields at once).
        public static func custom(_ spec: OptionSpec, _ read: @escaping @Sendable (ConfigReader, inout Config) -> Void) -> Row {
            Row(spec: spec, read: read)
        }

        /// The `@OptionField` stored as `label`; its `read` is only ever given a config the table has
        /// just made (`OptionTable.read`).
        static func field(_ label: String, _ spec: OptionSpec) -> Row {
            Row(spec: spec) { r, c in
                for child in Mirror(reflecting: c).children where child.label == label {
                    (child.value as? any MirroredOptionField)?.load(r)
                }
            }
        }

        /// An option the table's check reads (options whose order in the file matters).
        public static func declared(_ spec: OptionSpec) -> Row {
            Row(spec: spec) { _, _ in }
        }

        /// `key`'s value (or its default) into `field`.
        public static func key<V>(_ key: ConfigKey<V>, _ field: WritableKeyPath<Config, V> & Sendable) -> Row {
            Row(spec: key.spec) { r, c in c[keyPath: field] = key.read(r, key) }
        }

        /// `key`'s value into `field` after `adjust` (which may check it and report on the reader).
        public static func key<V, F>(_ key: ConfigKey<V>, _ field: WritableKeyPath<Config, F> & Sendable,
                                     _ adjust: @escaping @Sendable (ConfigReader, V) -> F) -> Row {
            Row(spec: key.spec) { r, c in c[keyPath: field] = adjust(r, key.read(r, key)) }
        }

        /// A group of nested options, read by `read` from the group's own reader; `field` keeps its
        /// value when the group is not written.
        public static func group<V>(_ group: ConfigGroup, _ field: WritableKeyPath<Config, V> & Sendable,
                                    _ read: @escaping @Sendable (ConfigReader) -> V) -> Row {
            Row(spec: group.spec) { r, c in
                if let g = r.group(group) { c[keyPath: field] = read(g) }
            }
        }

        /// A group of nested options read by their own table into `field`.
        public static func group<V: Sendable>(_ key: String, _ doc: String, defaultText: String = "", _ table: OptionTable<V>,
                                              _ field: WritableKeyPath<Config, V> & Sendable) -> Row {
            group(ConfigGroup(key, doc, defaultText: defaultText, table.options), table, field)
        }

        /// `group` (declared with `table.options`) read by `table` into `field`.
        public static func group<V: Sendable>(_ group: ConfigGroup, _ table: OptionTable<V>,
                                              _ field: WritableKeyPath<Config, V> & Sendable) -> Row {
            Row(spec: group.spec) { r, c in
                if let g = r.group(group) { table.read(g, into: &c[keyPath: field]) }
            }
        }
    }
}

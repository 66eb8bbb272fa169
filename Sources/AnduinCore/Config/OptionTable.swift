/// A plugin's options as one table: each row is a declared option (`ConfigKey` or `ConfigGroup`) and
/// the field of the plugin's config struct it fills, as a key path (Fluent Bit's `config_map[]` with its
/// `offsetof`). The option list (unknown keys, did-you-mean, the README's tables) and the parsing both
/// come from the rows. Defaults come from the struct's own field values (`defaults`, passed to the
/// rows as `d`), so adding an option is its field (with its default) and its row.
///
///     static let table = OptionTable(TailConfig(paths: [])) { d in [
///         .key(.duration("poll_interval", default: d.pollInterval, 0.001...3600, "..."), \.pollInterval),
///     ]}
public struct OptionTable<Config: Sendable>: Sendable {
    public let rows: [Row]
    /// The config before anything is read: every field at its default.
    public let defaults: Config
    /// Checks between options (one excludes another...), after every row was read; told whether the
    /// rows reported nothing (a "give at least one of" message is noise after a bad value).
    public typealias Check = @Sendable (_ reader: ConfigReader, _ config: inout Config, _ rowsClean: Bool) -> Void
    let check: Check?

    public init(_ defaults: Config, check: Check? = nil,
                _ rows: (Config) -> [Row]) {
        self.defaults = defaults
        self.rows = rows(defaults)
        self.check = check
    }

    /// The declarations, in table order.
    public var options: [OptionSpec] { rows.map(\.spec) }

    /// Reads every row into `config`, reporting problems on `reader`; a row whose key is absent sets
    /// its default.
    public func read(_ reader: ConfigReader, into config: inout Config) {
        let errorsBefore = reader.diagnostics.items.count
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

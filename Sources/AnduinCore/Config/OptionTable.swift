/// A plugin's options as one table (Fluent Bit's `config_map[]`), made from the fields of its config
/// struct: each option is an `@OptionField`, at once the stored value, its default (the initial
/// value) and its declaration, so adding an option is one line. The option list (unknown keys,
/// did-you-mean, the README's tables) and the parsing both come from the table.
///
///     public struct TailConfig: InputConfig {
///         @OptionField(.duration("poll_interval", 0.001...3600, "...")) public var pollInterval = 0.25
///         ...
///         static let table = OptionTable(fields: TailConfig(paths: []))
///     }
///
/// The options are the struct's `@OptionField`s in declaration order (`Mirror`); parsing makes a new
/// struct and reads each option into its field. Stored fields that are not `@OptionField`s are not
/// options: a parsed config has them as the table's initializer makes them.
public struct OptionTable<Config: Sendable>: Sendable {
    /// The declarations: the `@OptionField`s in declaration order.
    public let options: [OptionSpec]
    /// Every field at its default (a new value each time).
    public var defaults: Config { make() }
    private let make: @Sendable () -> Config
    /// Checks between options (one excludes another...), after every field was read; told whether
    /// the fields reported nothing (a "give at least one of" message is noise after a bad value).
    public typealias Check = @Sendable (_ reader: ConfigReader, _ config: inout Config, _ fieldsClean: Bool) -> Void
    let check: Check?

    /// The table of a struct's `@OptionField`s, in declaration order; `config` must make a new value
    /// each time (a call of the struct's initializer), for its fields' boxes to be its own.
    public init(fields config: @escaping @autoclosure @Sendable () -> Config, check: Check? = nil) {
        make = config
        options = Mirror(reflecting: config()).children.compactMap { ($0.value as? any MirroredOptionField)?.spec }
        self.check = check
    }

    /// Replaces `config` with a new one (`defaults`: the table writes only into a config it has
    /// made) and reads every option into it, reporting problems on `reader`; an absent option keeps
    /// its default.
    public func read(_ reader: ConfigReader, into config: inout Config) {
        let errorsBefore = reader.diagnostics.items.count
        config = make()
        for child in Mirror(reflecting: config).children {
            (child.value as? any MirroredOptionField)?.load(reader)
        }
        check?(reader, &config, reader.diagnostics.items.count == errorsBefore)
    }

    /// `defaults` with every option read from `reader`, or nil when anything was reported.
    public func parse(_ reader: ConfigReader) -> Config? {
        let errorsBefore = reader.diagnostics.items.count
        var config = defaults
        read(reader, into: &config)
        return reader.diagnostics.items.count == errorsBefore ? config : nil
    }
}

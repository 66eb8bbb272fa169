import AnduinCore

/// The rules of joining lines into records, shared by `multiline:` on the `tail` input (where lines
/// are joined before acknowledgements exist, so a crash never cuts a record) and the `multiline`
/// filter (records from other inputs). One declaration of the options for both.
public enum MultilineMode: String, Sendable, CaseIterable {
    case java, python, go, custom
}

/// The options, read and checked: each field is its option's declaration with its default.
public struct MultilineSettings: Sendable {
    /// `java` is only the placeholder of a required option.
    @OptionField(.text("mode", "java | python | go | custom", required: true, "`java`: a line continues the record before it when it is `\\tat …`, `    at …` (also Node.js), `\\t... N more`, `Caused by:`, `Suppressed:`, or starts with `Exception`/`Error` or a class name ending in `Exception`/`Error`/`Throwable` (`java.lang.IllegalStateException: boom`). `python`: `Traceback (most recent call last):` through its indented lines and the `XxxError: msg` line, chained tracebacks included. `go`: `panic:`/`fatal error:` through the goroutine blocks (headers, function lines, `\\t/path/file.go:N +0x…`, `created by`, blank lines between). `custom`: the patterns below"),
                 adjust: readMode)
    public var mode = MultilineMode.java
    @OptionField(.text("start_pattern", "regex", "(custom) regex of a line that begins a record; alone: every other line continues"),
                 adjust: { r, t in pattern(r, "start_pattern", t) })
    public var start: ValuePattern? = nil
    @OptionField(.text("continue_pattern", "regex", "(custom) regex of a line that continues a record; with `start_pattern`, only records begun by a start line are continued"),
                 adjust: { r, t in pattern(r, "continue_pattern", t) })
    public var continuation: ValuePattern? = nil
    @OptionField(.duration("flush_timeout", 0.001...3600, "a record is shipped after this long without a new line (in `java` and `custom` modes every last line waits this long)"))
    public var flushTimeout = 1.0
    @OptionField(.size("max_bytes", 64...(64 << 20), "a longer record is cut, flagged `log.truncated: true` and shipped; the rest of its lines are dropped (counted: `records_dropped` of the filter, `multiline_dropped` of the tail)"))
    public var maxBytes = 1 << 20
    @OptionField(.string("separator", "put between joined lines", defaultText: "\"\\n\""))
    public var separator = "\n"

    /// The other settings at their defaults (the fields' initial values) unless given.
    public init(mode: MultilineMode, start: ValuePattern? = nil, continuation: ValuePattern? = nil,
                flushTimeout: Double? = nil, maxBytes: Int? = nil, separator: String? = nil) {
        self.mode = mode
        self.start = start
        self.continuation = continuation
        if let flushTimeout { self.flushTimeout = flushTimeout }
        if let maxBytes { self.maxBytes = maxBytes }
        if let separator { self.separator = separator }
    }

    /// The options; `table.parse` reads them from the filter's mapping or the tail's `multiline:`
    /// group (nil after reporting what is wrong).
    public static let table = OptionTable(fields: MultilineSettings(mode: .java), check: checkPatterns)

    /// `mode`: nil (keeping the placeholder) when absent, reported as missing, or unknown.
    @Sendable static func readMode(_ r: ConfigReader, _ name: String?) -> MultilineMode? {
        guard let name else { return nil }
        guard let m = MultilineMode(rawValue: name) else {
            r.error("mode", "unknown mode \"\(name)\"; expected java | python | go | custom")
            return nil
        }
        return m
    }

    @Sendable static func pattern(_ reader: ConfigReader, _ key: String, _ text: String?) -> ValuePattern? {
        guard let text else { return nil }
        if text.isEmpty {
            reader.error(key, "empty pattern")
            return nil
        }
        do { return try ValuePattern(text) } catch {
            reader.error(key, "invalid regular expression \"\(text)\": \(error)")
            return nil
        }
    }

    @Sendable static func checkPatterns(_ reader: ConfigReader, _ s: inout MultilineSettings, _: Bool) {
        if s.mode == .custom {
            if !reader.has("start_pattern") && !reader.has("continue_pattern") {
                reader.error("mode", "custom needs start_pattern (a line that begins a record), continue_pattern (a line that continues one), or both")
            }
        } else {
            for key in ["start_pattern", "continue_pattern"] where reader.has(key) {
                reader.error(key, "only used with mode: custom (mode is \(s.mode.rawValue))")
            }
        }
    }
}

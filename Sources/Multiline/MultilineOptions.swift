import AnduinCore

/// The rules of joining lines into records, shared by `multiline:` on the `tail` input (where lines
/// are joined before acknowledgements exist, so a crash never cuts a record) and the `multiline`
/// filter (records from other inputs). One declaration of the options for both.
public enum MultilineMode: String, Sendable, CaseIterable {
    case java, python, go, custom
}

public enum MultilineKeys {
    public static let mode = ConfigKey<String?>.text("mode", "java | python | go | custom", required: true, "`java`: a line continues the record before it when it is `\\tat …`, `    at …` (also Node.js), `\\t... N more`, `Caused by:`, `Suppressed:`, or starts with `Exception`/`Error` or a class name ending in `Exception`/`Error`/`Throwable` (`java.lang.IllegalStateException: boom`). `python`: `Traceback (most recent call last):` through its indented lines and the `XxxError: msg` line, chained tracebacks included. `go`: `panic:`/`fatal error:` through the goroutine blocks (headers, function lines, `\\t/path/file.go:N +0x…`, `created by`, blank lines between). `custom`: the patterns below")
    public static let startPattern = ConfigKey<String?>.text("start_pattern", "regex", "(custom) regex of a line that begins a record; alone: every other line continues")
    public static let continuePattern = ConfigKey<String?>.text("continue_pattern", "regex", "(custom) regex of a line that continues a record; with `start_pattern`, only records begun by a start line are continued")
    public static let flushTimeout = ConfigKey<Double>.duration("flush_timeout", default: 1, 0.001...3600, "a record is shipped after this long without a new line (in `java` and `custom` modes every last line waits this long)")
    public static let maxBytes = ConfigKey<Int>.size("max_bytes", default: 1 << 20, 64...(64 << 20), "a longer record is cut, flagged `log.truncated: true` and shipped; the rest of its lines are dropped (counted: `records_dropped` of the filter, `multiline_dropped` of the tail)")
    public static let separator = ConfigKey<String>.string("separator", default: "\n", "put between joined lines", defaultText: "\"\\n\"")
    public static let options = [mode.spec, startPattern.spec, continuePattern.spec, flushTimeout.spec, maxBytes.spec, separator.spec]
}

/// The options, read and checked.
public struct MultilineSettings: Sendable {
    public var mode: MultilineMode
    public var start: ValuePattern?
    public var continuation: ValuePattern?
    public var flushTimeout: Double
    public var maxBytes: Int
    public var separator: String

    public init(mode: MultilineMode, start: ValuePattern? = nil, continuation: ValuePattern? = nil,
                flushTimeout: Double = 1, maxBytes: Int = 1 << 20, separator: String = "\n") {
        self.mode = mode
        self.start = start
        self.continuation = continuation
        self.flushTimeout = flushTimeout
        self.maxBytes = maxBytes
        self.separator = separator
    }

    /// Reads the options from `reader` (the filter's mapping or the tail's `multiline:` group);
    /// nil after reporting what is wrong.
    public static func read(_ reader: ConfigReader) -> MultilineSettings? {
        typealias K = MultilineKeys
        let errorsBefore = reader.diagnostics.items.count
        var mode = MultilineMode.java
        if let name = reader.get(K.mode) {
            if let m = MultilineMode(rawValue: name) {
                mode = m
            } else {
                reader.error("mode", "unknown mode \"\(name)\"; expected java | python | go | custom")
            }
        }
        func pattern(_ option: ConfigKey<String?>) -> ValuePattern? {
            let key = option.key
            guard let text = reader.get(option) else { return nil }
            if text.isEmpty {
                reader.error(key, "empty pattern")
                return nil
            }
            do { return try ValuePattern(text) } catch {
                reader.error(key, "invalid regular expression \"\(text)\": \(error)")
                return nil
            }
        }
        let start = pattern(K.startPattern)
        let cont = pattern(K.continuePattern)
        if mode == .custom {
            if !reader.has("start_pattern") && !reader.has("continue_pattern") {
                reader.error("mode", "custom needs start_pattern (a line that begins a record), continue_pattern (a line that continues one), or both")
            }
        } else {
            for key in ["start_pattern", "continue_pattern"] where reader.has(key) {
                reader.error(key, "only used with mode: custom (mode is \(mode.rawValue))")
            }
        }
        let settings = MultilineSettings(mode: mode, start: start, continuation: cont, flushTimeout: reader.get(K.flushTimeout),
                                         maxBytes: reader.get(K.maxBytes), separator: reader.get(K.separator))
        guard reader.diagnostics.items.count == errorsBefore else { return nil }
        return settings
    }
}

import AnduinCore

/// The `parse` filter: lifts JSON, logfmt, regex captures and the built-in text formats (nginx,
/// Apache, klog, syslog) into fields, and optionally takes the record's time from one of them.
///
///     filters:
///       parse:
///         type: parse
///         from: [containers]
///         formats: [json, logfmt, nginx]   # tried in order; default [json] ([regex] with regex:)
///         regex: '^(?<level>\w+) (?<msg>.*)$'  # PCRE2; the `regex` format
///         types: {duration_ms: int}        # logfmt values and regex captures
///         time_key: time                   # time_format, time_zone, max_future: see TimeParse
///         target: root                     # or a field name to nest the parsed fields under
///         keep_message: false
///
/// With `target: root`, a lifted key that the agent writes itself (`@timestamp`, `stream`, `log`,
/// `event`, `kubernetes`, and `message` when kept) is written as `_key` (`__key`, … when that is
/// taken), and a lifted key replaces a field of the same name the record or its batch had: a
/// record never has duplicate keys (Elasticsearch rejects those). See `MemberKeys`.
public enum ParsePlugin {
    static let table = OptionTable(fields: ParseOptions())
    public static let options = table.options

    public static let spec: PluginSpec = .filter("parse", "lift JSON or logfmt messages into fields", options: options) { reader in
        let errorsBefore = reader.diagnostics.items.count
        var o = table.defaults
        table.read(reader, into: &o)
        return config(o, reader, errorsBefore: errorsBefore)
    }

    /// The options as written, checked together and compiled; nil when anything was reported since
    /// `errorsBefore`.
    static func config(_ o: ParseOptions, _ reader: ConfigReader, errorsBefore: Int) -> ParseConfig? {
        var formats: [ParseFormat] = []
        let regexText = o.regex
        // Absent (or null) means the default; an explicit empty list is a mistake worth reporting.
        let names = reader.has("formats") || regexText == nil ? o.formats : ["regex"]
        if names.isEmpty {
            reader.error("formats", "list at least one format (\(ParseFormat.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        for name in names {
            guard let f = ParseFormat(rawValue: name) else {
                reader.error("formats", "unknown format \"\(name)\"; expected one of \(ParseFormat.allCases.map(\.rawValue).joined(separator: ", "))")
                continue
            }
            if formats.contains(f) {
                reader.error("formats", "\"\(name)\" is listed twice")
                continue
            }
            formats.append(f)
        }

        var types: [String: ValueType] = [:]
        if let v = o.types {
            if case .mapping(let entries, _) = v {
                for e in entries {
                    if case .scalar(let s, _, _) = e.value, let t = ValueType(rawValue: s) {
                        types[e.key] = t
                    } else {
                        reader.diagnostics.error(e.value.mark, "\(reader.context): types: \(e.key): expected int, float, bool or string")
                    }
                }
            } else {
                reader.error("types", "expected a mapping of field names to int, float, bool or string")
            }
        }

        var regex: CaptureFormat? = nil
        if let regexText {
            let mark = reader.markOf("regex")
            var plain = false
            if case .scalar(_, _, let p) = reader.value("regex") { plain = p }
            do throws(CaptureRegex.CompileError) {
                let compiled = try CaptureRegex(regexText)
                if compiled.names.isEmpty {
                    reader.diagnostics.error(mark, "\(reader.context): regex: the pattern has no named group (?<name>…); name the parts that become fields")
                } else {
                    regex = CaptureFormat(regex: compiled, types: types)
                }
            } catch {
                reader.diagnostics.error(ParsePlugin.markInside(mark, regexText, offset: error.offset, plain: plain),
                                         "\(reader.context): regex: invalid pattern: \(error.message) (at byte \(error.offset) of the pattern)")
            }
            if !formats.contains(.regex) && reader.has("formats") {
                reader.error("regex", "formats does not list regex, so the pattern is never used")
            }
        } else if formats.contains(.regex) {
            reader.error("formats", "regex is listed but the regex: option is not set")
        }

        let keepMessage = o.keepMessage

        var target = ParseTarget.root
        let targetName = o.target
        if targetName.isEmpty {
            reader.error("target", "must be root or a field name")
        } else if targetName != "root" {
            if ParseConfig.reservedNames(keepMessage: keepMessage).contains(targetName) {
                reader.error("target", "\"\(targetName)\" is a field the agent writes itself; choose another name")
            } else {
                target = .field(targetName)
            }
        }

        var time: ParseTime? = nil
        let timeKey = o.timeKey
        var timeFormat = TimeFormat.auto
        if let text = o.timeFormat {
            switch TimeFormat.parse(text) {
            case .success(let f): timeFormat = f
            case .failure(let e): reader.error("time_format", e.message)
            }
        }
        var zone = TimeZoneRule.utc
        if let text = o.timeZone {
            if let z = TimeZoneRule.parse(text) {
                zone = z
            } else {
                reader.error("time_zone", "unknown zone \"\(text)\"; expected UTC, an offset like +02:00, or a tz database name like Europe/Berlin")
            }
        }
        let maxFuture = o.maxFuture
        if let timeKey {
            if timeKey.isEmpty { reader.error("time_key", "must be a field name") }
            time = ParseTime(key: timeKey, format: timeFormat, zone: zone,
                             maxFutureNanos: Int64(saturating: maxFuture * 1e9))
        } else {
            for key in ["time_format", "time_zone", "max_future"] where reader.has(key) {
                reader.error(key, "has no effect without time_key")
            }
        }

        guard reader.diagnostics.items.count == errorsBefore else { return nil }
        return ParseConfig(formats: formats, target: target, keepMessage: keepMessage, time: time, regex: regex, types: types)
    }

    /// Where byte `offset` of a pattern written at `mark` is in the file: exact for a plain scalar
    /// on one line, and for a quoted one without escapes; otherwise the start of the value.
    static func markInside(_ mark: SourceMark, _ text: String, offset: Int, plain: Bool) -> SourceMark {
        let prefix = text.utf8.prefix(max(0, offset))
        guard !prefix.contains(UInt8(ascii: "\n")) else { return mark }
        let chars = String(decoding: prefix, as: UTF8.self).count
        var m = mark
        if plain {
            m.column += chars
        } else if !text.contains("\\") && !text.contains("'") {
            m.column += 1 + chars
        }
        return m
    }
}

public enum ParseFormat: String, Sendable, CaseIterable {
    case json, logfmt, regex, nginx
    case apacheCombined = "apache_combined"
    case klog
    case syslogRFC5424 = "syslog_rfc5424"
    case syslogRFC3164 = "syslog_rfc3164"

    /// What `time_format: auto` reads for a record this format lifted (tried in order).
    var ownTimeFormats: [TimeFormat] {
        switch self {
        case .json, .logfmt, .regex: return [.auto]
        case .nginx, .apacheCombined: return [.nginx]
        case .klog: return [.klog]
        case .syslogRFC5424: return [.rfc3339]
        case .syslogRFC3164: return [.syslog, .rfc3339]
        }
    }

    /// Position in `allCases` (per-format counters).
    var index: Int {
        switch self {
        case .json: 0
        case .logfmt: 1
        case .regex: 2
        case .nginx: 3
        case .apacheCombined: 4
        case .klog: 5
        case .syslogRFC5424: 6
        case .syslogRFC3164: 7
        }
    }

    /// The built-in pattern of a text format; nil for json, logfmt and regex.
    var builtIn: CaptureFormat? {
        switch self {
        case .json, .logfmt, .regex: nil
        case .nginx: BuiltInFormats.nginx
        case .apacheCombined: BuiltInFormats.apacheCombined
        case .klog: BuiltInFormats.klog
        case .syslogRFC5424: BuiltInFormats.syslogRFC5424
        case .syslogRFC3164: BuiltInFormats.syslogRFC3164
        }
    }
}

public enum ParseTarget: Sendable, Equatable {
    /// Lifted members go at the top level of the record.
    case root
    /// Lifted members go in an object under this name.
    case field(String)
}

/// Where a parsed record's own time is read from (`time_key` and its options).
public struct ParseTime: Sendable {
    public var key: String
    public var format: TimeFormat
    public var zone: TimeZoneRule
    public var maxFutureNanos: Int64

    public init(key: String, format: TimeFormat = .auto, zone: TimeZoneRule = .utc, maxFutureNanos: Int64 = 3_600_000_000_000) {
        self.key = key
        self.format = format
        self.zone = zone
        self.maxFutureNanos = maxFutureNanos
    }
}

/// The `parse` filter's options as written (`ParsePlugin.table`); `ParsePlugin.config` checks them
/// together and compiles them into a `ParseConfig`.
struct ParseOptions: Sendable {
    @OptionField(.list("formats", "tried in order: `json` (a message that is one JSON object), `logfmt` (`level=info msg=\"a b\" dur=1.2ms`, bare keys are `true`, values are strings unless `types:` says otherwise; the first token must be `key=value`), `regex` (the `regex:` option), and the built-in `nginx`, `apache_combined`, `klog`, `syslog_rfc5424`, `syslog_rfc3164` (fields: README \"Built-in formats\")", defaultText: "[json], or [regex] with regex:"))
    var formats = ["json"]
    @OptionField(.text("regex", "PCRE2 pattern", "named groups `(?<name>…)` become fields; a line that does not match goes on to the next format"))
    var regex: String? = nil
    @OptionField(.free("types", "mapping: field → int | float | bool | string",
                       "convert logfmt values and regex captures (`{duration_ms: int}`); a value that does not convert stays a string and is counted"))
    var types: ConfigValue? = nil
    @OptionField(.string("target", "`root`, or a field name to nest the parsed fields under"))
    var target = "root"
    @OptionField(.bool("keep_message", "keep `message` even when it was lifted"))
    var keepMessage = false
    @OptionField(.string("time_key", "a parsed field holding the event's time, which becomes the record's time (`@timestamp`, index date, delivery lag); the field stays"))
    var timeKey: String? = nil
    @OptionField(.text("time_format", "auto | rfc3339 | epoch_s | epoch_ms | epoch_us | epoch_ns | nginx | klog | syslog | %-pattern",
                       "how `time_key` is read: `auto` is the matched format's own time (RFC 3339 or an epoch number by its size for json, logfmt and regex); a pattern takes %Y %m %d %e %H %M %S %f %b %z %s %T", defaultText: "auto"))
    var timeFormat: String? = nil
    @OptionField(.text("time_zone", "UTC | ±hh:mm | tz name", "zone of times written without one (`Europe/Berlin`: daylight saving applies; a repeated hour is its first pass)", defaultText: "UTC"))
    var timeZone: String? = nil
    @OptionField(.duration("max_future", defaultDurationRange,
                           "a parsed time further ahead of the runtime's time is counted and not used"))
    var maxFuture = 3600.0
}

public struct ParseConfig: FilterConfig {
    public var formats: [ParseFormat]
    public var target: ParseTarget
    public var keepMessage: Bool
    public var time: ParseTime?
    /// The `regex:` format (required when `formats` lists `regex`).
    public var regex: CaptureFormat?
    public var types: [String: ValueType]

    public init(formats: [ParseFormat], target: ParseTarget = .root, keepMessage: Bool = false, time: ParseTime? = nil,
                regex: CaptureFormat? = nil, types: [String: ValueType] = [:]) {
        self.formats = formats
        self.target = target
        self.keepMessage = keepMessage
        self.time = time
        self.regex = regex
        self.types = types
    }

    /// Top-level names written by the agent (RecordEncoder and the inputs' shared fields).
    static func reservedNames(keepMessage: Bool) -> [String] {
        ["@timestamp", "stream", "log", "event", "kubernetes"] + (keepMessage ? ["message"] : [])
    }

    public func build(_ context: ComponentContext) throws -> any Filter {
        ParseFilter(config: self, stats: context.stats)
    }
}

public final class ParseFilter: Filter {
    let formats: [ParseFormat]
    let keepMessage: Bool
    /// `"NAME":{` for a nested target, pre-rendered once; nil for root.
    let targetPrefix: [UInt8]?
    /// Names renamed to `_name` when lifted to the root; empty for a nested target (no clash there).
    let reserved: [[UInt8]]
    /// The nested target's name (its key in the record), nil for root.
    let targetName: [UInt8]?

    /// `parsed_<format>`, by `ParseFormat.index`.
    let parsed: [Counter]
    let notParsed: Counter
    let typeErrors: Counter
    /// The capture pattern of each entry of `formats` (nil for json and logfmt).
    let captures: [CaptureFormat?]
    /// How each capture format's fields nest, for this filter's target.
    let layouts: [CaptureLayout?]
    /// `types:` as (key bytes, type), for logfmt.
    let logfmtTypes: [([UInt8], ValueType)]
    let time: ParseTime?
    /// `time.key` as a lookup path into the lifted members.
    let timePath: [[UInt8]]
    /// `time.key` split at dots, for a time inside a nested object.
    let timeNestedPath: [[UInt8]]
    let timeParsed: Counter
    let timeUnparsable: Counter
    let timeMissing: Counter
    let timeTooFarAhead: Counter

    init(config: ParseConfig, stats: ComponentStats) {
        formats = config.formats
        captures = config.formats.map { $0 == .regex ? config.regex : $0.builtIn }
        let keepDotted: [[UInt8]] = config.target == .root ? ParseConfig.reservedNames(keepMessage: config.keepMessage).map { Array($0.utf8) } : []
        layouts = captures.map { $0.map { CaptureLayout($0, keepDotted: keepDotted) } }
        logfmtTypes = config.types.sorted { $0.key < $1.key }.map { (Array($0.key.utf8), $0.value) }
        time = config.time
        timePath = config.time.map { [Array($0.key.utf8)] } ?? []
        timeNestedPath = config.time.map { $0.key.split(separator: ".").map { Array($0.utf8) } } ?? []
        keepMessage = config.keepMessage
        switch config.target {
        case .root:
            targetPrefix = nil
            targetName = nil
            reserved = ParseConfig.reservedNames(keepMessage: config.keepMessage).map { Array($0.utf8) }
        case .field(let name):
            var w = JSONWriter()
            w.writeString(name)
            w.writeRaw(":{")
            targetPrefix = w.bytes
            targetName = Array(name.utf8)
            reserved = []
        }
        parsed = ParseFormat.allCases.map { f in
            stats.counter("parsed_\(f.rawValue)", f == .json ? "records whose message was lifted from JSON"
                          : f == .regex ? "records whose message matched regex:" : "records whose message was lifted from \(f.rawValue)")
        }
        typeErrors = stats.counter("type_errors", "values types: could not convert (kept as strings)")
        notParsed = stats.counter("not_parsed", "records whose message matched no format and was kept as is")
        timeParsed = stats.counter("time_parsed", "records whose time was set from time_key")
        timeUnparsable = stats.counter("time_unparsable", "parsed records whose time_key value was not a time in time_format (the runtime's time is kept)")
        timeMissing = stats.counter("time_missing", "parsed records without a time_key field (the runtime's time is kept)")
        timeTooFarAhead = stats.counter("time_too_far_ahead", "parsed times more than max_future ahead of the runtime's time (the runtime's time is kept)")
    }

    enum TimeOutcome { case parsed, unparsable, missing, tooFarAhead }

    /// Reads `time.key` from the lifted members and sets the record's time from it.
    func applyTime(_ time: ParseTime, _ lifted: [UInt8], format: ParseFormat, to record: inout Record) -> TimeOutcome {
        lifted.withUnsafeBytes { members -> TimeOutcome in
            guard let r = JSONScan.lookup(members, path: timePath) ?? (timeNestedPath.count > 1 ? JSONScan.lookup(members, path: timeNestedPath) : nil),
                  !r.isEmpty else { return .missing }
            let isString = members[r.lowerBound] == 0x22
            let text = isString && r.count >= 2
                ? UnsafeRawBufferPointer(rebasing: members[(r.lowerBound + 1)..<(r.upperBound - 1)])
                : UnsafeRawBufferPointer(rebasing: members[r])
            var parsedTime: Int64? = nil
            for fmt in time.format == .auto ? format.ownTimeFormats : [time.format] {
                parsedTime = TimeParse.parse(text, format: fmt, isNumber: !isString, zone: time.zone,
                                             reference: record.timestamp, maxFuture: time.maxFutureNanos)
                if parsedTime != nil { break }
            }
            guard let t = parsedTime else { return .unparsable }
            if t > record.timestamp.addingSaturating(time.maxFutureNanos) { return .tooFarAhead }
            record.timestamp = t
            return .parsed
        }
    }

    public func process(_ batch: inout RecordBatch) {
        // Per-call buffers (the filter is shared by several input threads), reused for every record.
        var lifted: [UInt8] = []
        lifted.reserveCapacity(1024)
        var logfmt = LogfmtScratch()
        var capture = CaptureScratch(formats: formats.count)
        var counts = [Int](repeating: 0, count: ParseFormat.allCases.count)
        var nTypeErrors = 0
        // The names a lifted key must not repeat: the batch's shared fields (then the record's own).
        var keys = MemberKeys()
        if targetPrefix == nil && !batch.sharedFields.isEmpty {
            batch.sharedFields.withUnsafeBytes { _ = keys.addOutsideNames(of: $0) }
        }
        let sharedNames = keys.outsideNameCount
        // Whether the outside names hold a record's own fields after the shared ones.
        var recordNames = false
        // Shared keys that some record lifted a value of its own for (rare; see `unshare`).
        var overriddenShared: [[UInt8]] = []
        var drop: [ArraySlice<UInt8>] = []
        var nNone = 0
        var nTime = 0, nTimeBad = 0, nTimeMissing = 0, nTimeAhead = 0
        // From the first lift on, records are rewritten into a new arena holding only the bytes still
        // used: a lifted message is dropped. Appending to the old arena instead copied it whole (the
        // stage before still holds it) and then doubled it for the new fields: queued records held
        // several times their live bytes.
        let old = batch.bytes
        var arena: [UInt8]? = nil
        old.withUnsafeBytes { src in
            for index in batch.records.indices {
                var record = batch.records[index]
                // Ranges come from the input; a bad one must not crash the agent: it is dropped.
                if record.message.lowerBound < 0 || record.message.upperBound > src.count { record.message = 0..<0 }
                if record.fields.lowerBound < 0 || record.fields.upperBound > src.count { record.fields = 0..<0 }
                // A message already lifted by an earlier filter is not there any more to lift again.
                var format: ParseFormat? = nil
                if !drop.isEmpty { drop.removeAll(keepingCapacity: true) }
                if !record.flags.contains(.messageLifted) {
                    lifted.removeAll(keepingCapacity: true)
                    if recordNames {
                        keys.removeOutsideNames(from: sharedNames)
                        recordNames = false
                    }
                    let old = UnsafeRawBufferPointer(rebasing: src[record.fields])
                    if targetPrefix == nil && !old.isEmpty {
                        keys.addOutsideNames(of: old)
                        recordNames = true
                    }
                    format = lift(UnsafeRawBufferPointer(rebasing: src[record.message]), into: &lifted,
                                  logfmt: &logfmt, capture: &capture, keys: &keys, typeErrors: &nTypeErrors)
                    if format != nil {
                        // The last writer wins: a lifted key replaces the record's own or the shared one.
                        if let targetName {
                            if !old.isEmpty, JSONScan.lookup(old, path: [targetName]) != nil, let targetPrefix {
                                // The key as written (escaped): `"NAME":{` without its quotes, colon and brace.
                                drop.append(targetPrefix.dropFirst().dropLast(3))
                            }
                            if !batch.sharedFields.isEmpty, FieldPath.hasMember(batch.sharedFields, 0..<batch.sharedFields.count, [targetName]),
                               !overriddenShared.contains(targetName) {
                                overriddenShared.append(targetName)
                            }
                        } else if keys.hasOverridden {
                            for k in keys.overridden {
                                if k >= sharedNames {
                                    drop.append(keys.outsideName(k))
                                } else if !overriddenShared.contains(where: { $0[...] == keys.outsideName(k) }) {
                                    overriddenShared.append(Array(keys.outsideName(k)))
                                }
                            }
                        }
                    }
                    if let format { counts[format.index] += 1 } else { nNone += 1 }
                    if let time, let format {
                        switch applyTime(time, lifted, format: format, to: &record) {
                        case .parsed: nTime += 1
                        case .unparsable: nTimeBad += 1
                        case .missing: nTimeMissing += 1
                        case .tooFarAhead: nTimeAhead += 1
                        }
                    }
                }
                if format != nil && arena == nil {
                    // The first lift: the records before it move to the new arena too.
                    var out: [UInt8] = []
                    out.reserveCapacity((keepMessage ? 2 * src.count : src.count + src.count / 8) + 256)
                    for j in 0..<index {
                        let r = batch.records[j]
                        batch.records[j].message = r.flags.contains(.messageLifted)
                            ? out.count..<out.count : Self.copy(r.message, from: src, to: &out)
                        batch.records[j].fields = Self.copy(r.fields, from: src, to: &out)
                    }
                    arena = out
                }
                guard var out = arena.take() else { continue }
                let dropMessage = record.flags.contains(.messageLifted) || (format != nil && !keepMessage)
                record.message = dropMessage ? out.count..<out.count : Self.copy(record.message, from: src, to: &out)
                if format != nil {
                    record.fields = commit(lifted, after: record.fields, dropping: drop, from: src, to: &out)
                    if !keepMessage { record.flags.insert(.messageLifted) }
                } else {
                    record.fields = Self.copy(record.fields, from: src, to: &out)
                }
                arena = out
                batch.records[index] = record
            }
        }
        if let arena { batch.bytes = arena }
        for key in overriddenShared { Self.unshare(key, &batch) }
        // One atomic add per batch, not per record.
        for (i, n) in counts.enumerated() where n > 0 { parsed[i].add(n) }
        if nTypeErrors > 0 { typeErrors.add(nTypeErrors) }
        if nNone > 0 { notParsed.add(nNone) }
        if nTime > 0 { timeParsed.add(nTime) }
        if nTimeBad > 0 { timeUnparsable.add(nTimeBad) }
        if nTimeMissing > 0 { timeMissing.add(nTimeMissing) }
        if nTimeAhead > 0 { timeTooFarAhead.add(nTimeAhead) }
    }

    /// Tries each format in order; on success `out` holds the members (at least one) and the format
    /// is returned.
    func lift(_ message: UnsafeRawBufferPointer, into out: inout [UInt8], logfmt: inout LogfmtScratch,
              capture: inout CaptureScratch, keys: inout MemberKeys, typeErrors: inout Int) -> ParseFormat? {
        for (k, format) in formats.enumerated() {
            switch format {
            case .json:
                // Cheap rejection: most plain-text lines never reach the JSON scanner.
                guard let first = message.first(where: { !isJSONSpace($0) }), first == UInt8(ascii: "{") else { continue }
                if let n = JSONScan.liftObject(message, into: &out, keys: &keys, renameKey: isReserved) {
                    // `{}` has nothing to lift: keep the message rather than leave an empty record.
                    if n > 0 { return .json }
                    out.removeAll(keepingCapacity: true)
                }
            case .logfmt:
                if Logfmt.lift(message, into: &out, scratch: &logfmt, keys: &keys, renameKey: isReserved,
                               types: logfmtTypes, typeErrors: &typeErrors) != nil {
                    return .logfmt
                }
            case .regex, .nginx, .apacheCombined, .klog, .syslogRFC5424, .syslogRFC3164:
                guard let pattern = captures[k], let layout = layouts[k] else { continue }
                let scratch: CaptureRegex.Scratch
                if let s = capture.matches[k] { scratch = s } else {
                    scratch = CaptureRegex.Scratch(for: pattern.regex)
                    capture.matches[k] = scratch
                }
                if Captures.lift(message, format: pattern, layout: layout, match: scratch, ranges: &capture.ranges,
                                 present: &capture.present, into: &out,
                                 keys: &keys, renameKey: isReserved, typeErrors: &typeErrors) != nil {
                    return format
                }
            }
        }
        return nil
    }

    /// Appends the record's fields to `out`: the ones it had (`old`, in `src`) first, except the keys
    /// in `dropping` (lifted again: the last writer wins), then the lifted members, so the range
    /// stays one contiguous run of members.
    func commit(_ lifted: [UInt8], after old: Range<Int>, dropping: [ArraySlice<UInt8>],
                from src: UnsafeRawBufferPointer, to out: inout [UInt8]) -> Range<Int> {
        let start = out.count
        if dropping.isEmpty {
            if !Self.copy(old, from: src, to: &out).isEmpty { out.append(UInt8(ascii: ",")) }
        } else if old.lowerBound >= 0 && old.upperBound <= src.count {
            Self.copyMembers(UnsafeRawBufferPointer(rebasing: src[old]), except: dropping, to: &out)
            if out.count > start { out.append(UInt8(ascii: ",")) }
        }
        if let targetPrefix { out.append(contentsOf: targetPrefix) }
        out.append(contentsOf: lifted)
        if targetPrefix != nil { out.append(UInt8(ascii: "}")) }
        return start..<out.count
    }

    /// Appends the members of `members` whose key is not in `except` (canonical keys, as the lift
    /// and `FieldEdit` write them), comma-separated.
    static func copyMembers(_ members: UnsafeRawBufferPointer, except: [ArraySlice<UInt8>], to out: inout [UInt8]) {
        guard let p = members.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
        let n = members.count
        let mark = out.count
        var i = JSONScan.skipWS(p, 0, n)
        var wrote = false
        while i < n {
            guard p[i] == 0x22 else { break }
            let start = i
            var k = i + 1
            guard JSONScan.scanString(p, &k, n) != nil else { break }
            let key = UnsafeRawBufferPointer(start: p + start + 1, count: k - 1 - (start + 1))
            i = JSONScan.skipWS(p, k, n)
            guard i < n, p[i] == 0x3A else { break }
            i = JSONScan.skipWS(p, i + 1, n)
            guard JSONScan.skipValue(p, &i, n) else { break }
            if !except.contains(where: { $0.elementsEqual(key) }) {
                if wrote { out.append(UInt8(ascii: ",")) }
                out.append(contentsOf: UnsafeRawBufferPointer(start: p + start, count: i - start))
                wrote = true
            }
            i = JSONScan.skipWS(p, i, n)
            guard i < n, p[i] == 0x2C else { return }
            i = JSONScan.skipWS(p, i + 1, n)
        }
        // Not valid members (a bug upstream): kept whole rather than cut.
        if i < n {
            out.removeLast(out.count - mark)
            out.append(contentsOf: members)
        }
    }

    /// Moves the shared member `key` into the fields of each record that has no `key` of its own: a
    /// record lifted its own value for it, and a document must not carry both.
    static func unshare(_ key: [UInt8], _ batch: inout RecordBatch) {
        var value: [UInt8] = []
        let found: Bool = batch.sharedFields.withUnsafeBytes { shared in
            guard let r = JSONScan.lookup(shared, path: [key]) else { return false }
            value.append(contentsOf: shared[r])
            return true
        }
        guard found else { return }
        var scratch: [UInt8] = []
        let removed = batch.sharedFields.withUnsafeBytes { FieldEdit.apply(.remove, at: [key][...], in: $0, to: &scratch) }
        guard removed == .changed else { return }
        batch.sharedFields = scratch
        for i in batch.records.indices {
            let r = batch.records[i]
            guard r.fields.lowerBound >= 0, r.fields.upperBound <= batch.bytes.count else { continue }
            scratch.removeAll(keepingCapacity: true)
            let outcome = value.withUnsafeBytes { v in
                batch.bytes.withUnsafeBytes { FieldEdit.apply(.add(v), at: [key][...], in: UnsafeRawBufferPointer(rebasing: $0[r.fields]), to: &scratch) }
            }
            if outcome == .changed { batch.records[i].fields = scratch.withUnsafeBytes { batch.append(bytes: $0) } }
        }
    }

    /// Appends the bytes of `range` in `src` to `out` and returns where they are now; a range
    /// outside `src` (a bug upstream) becomes empty rather than a crash.
    static func copy(_ range: Range<Int>, from src: UnsafeRawBufferPointer, to out: inout [UInt8]) -> Range<Int> {
        let start = out.count
        if range.lowerBound >= 0 && range.upperBound <= src.count {
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: src[range]))
        }
        return start..<out.count
    }

    func isReserved(_ key: UnsafeRawBufferPointer) -> Bool {
        for name in reserved where name.count == key.count {
            if name.withUnsafeBytes({ $0.elementsEqual(key) }) { return true }
        }
        return false
    }

    @inline(__always) func isJSONSpace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D }
}

import AnduinCore

/// The `parse` filter: lifts JSON or logfmt messages into fields.
///
///     filters:
///       parse:
///         type: parse
///         from: [containers]
///         formats: [json, logfmt]   # tried in order; default [json]
///         target: root              # or a field name to nest the parsed fields under
///         keep_message: false
///
/// With `target: root`, a lifted key that the agent writes itself (`@timestamp`, `stream`, `log`,
/// `event`, `kubernetes`, and `message` when kept) is written as `_key`, so a record never has
/// duplicate keys (Elasticsearch rejects those).
public enum ParsePlugin {
    static let formats = ConfigKey<[String]>.list("formats", default: ["json"], "tried in order: `json` (a message that is one JSON object), `logfmt` (`level=info msg=\"a b\" dur=1.2ms`, bare keys are `true`, values are strings; the first token must be `key=value`)")
    static let target = ConfigKey<String>.string("target", default: "root", "`root`, or a field name to nest the parsed fields under")
    static let keepMessage = ConfigKey<Bool>.bool("keep_message", default: false, "keep `message` even when it was lifted")
    public static let options = [formats.spec, target.spec, keepMessage.spec]

    public static let spec: PluginSpec = .filter("parse", "lift JSON or logfmt messages into fields", options: options) { reader in
        let errorsBefore = reader.diagnostics.items.count

        var formats: [ParseFormat] = []
        // Absent (or null) means the default; an explicit empty list is a mistake worth reporting.
        let names = reader.get(ParsePlugin.formats)
        if names.isEmpty {
            reader.error("formats", "list at least one format (json, logfmt)")
        }
        for name in names {
            guard let f = ParseFormat(rawValue: name) else {
                reader.error("formats", "unknown format \"\(name)\"; expected json or logfmt")
                continue
            }
            if formats.contains(f) {
                reader.error("formats", "\"\(name)\" is listed twice")
                continue
            }
            formats.append(f)
        }

        let keepMessage = reader.get(ParsePlugin.keepMessage)

        var target = ParseTarget.root
        let targetName = reader.get(ParsePlugin.target)
        if targetName.isEmpty {
            reader.error("target", "must be root or a field name")
        } else if targetName != "root" {
            if ParseConfig.reservedNames(keepMessage: keepMessage).contains(targetName) {
                reader.error("target", "\"\(targetName)\" is a field the agent writes itself; choose another name")
            } else {
                target = .field(targetName)
            }
        }

        guard reader.diagnostics.items.count == errorsBefore else { return nil }
        return ParseConfig(formats: formats, target: target, keepMessage: keepMessage)
    }
}

public enum ParseFormat: String, Sendable, CaseIterable {
    case json, logfmt
}

public enum ParseTarget: Sendable, Equatable {
    /// Lifted members go at the top level of the record.
    case root
    /// Lifted members go in an object under this name.
    case field(String)
}

public struct ParseConfig: FilterConfig {
    public var formats: [ParseFormat]
    public var target: ParseTarget
    public var keepMessage: Bool

    public init(formats: [ParseFormat], target: ParseTarget = .root, keepMessage: Bool = false) {
        self.formats = formats
        self.target = target
        self.keepMessage = keepMessage
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

    let parsedJSON: Counter
    let parsedLogfmt: Counter
    let notParsed: Counter

    init(config: ParseConfig, stats: ComponentStats) {
        formats = config.formats
        keepMessage = config.keepMessage
        switch config.target {
        case .root:
            targetPrefix = nil
            reserved = ParseConfig.reservedNames(keepMessage: config.keepMessage).map { Array($0.utf8) }
        case .field(let name):
            var w = JSONWriter()
            w.writeString(name)
            w.writeRaw(":{")
            targetPrefix = w.bytes
            reserved = []
        }
        parsedJSON = stats.counter("parsed_json", "records whose message was lifted from JSON")
        parsedLogfmt = stats.counter("parsed_logfmt", "records whose message was lifted from logfmt")
        notParsed = stats.counter("not_parsed", "records whose message matched no format and was kept as is")
    }

    public func process(_ batch: inout RecordBatch) {
        // Per-call buffers (the filter is shared by several input threads), reused for every record.
        var lifted: [UInt8] = []
        lifted.reserveCapacity(1024)
        var logfmt = LogfmtScratch()
        var nJSON = 0, nLogfmt = 0, nNone = 0

        for index in batch.records.indices {
            let record = batch.records[index]
            // A message already lifted by an earlier filter is not there any more to lift again.
            if record.flags.contains(.messageLifted) { continue }
            lifted.removeAll(keepingCapacity: true)
            let format: ParseFormat? = batch.bytes.withUnsafeBytes { arena in
                // Ranges come from the input; a bad one must not crash the agent.
                guard record.message.lowerBound >= 0, record.message.upperBound <= arena.count else { return nil }
                let message = UnsafeRawBufferPointer(rebasing: arena[record.message])
                return lift(message, into: &lifted, logfmt: &logfmt)
            }
            guard let format, record.fields.lowerBound >= 0, record.fields.upperBound <= batch.bytes.count else {
                nNone += 1
                continue
            }
            batch.records[index].fields = commit(lifted, after: record.fields, in: &batch.bytes)
            if !keepMessage { batch.records[index].flags.insert(.messageLifted) }
            switch format {
            case .json: nJSON += 1
            case .logfmt: nLogfmt += 1
            }
        }
        // One atomic add per batch, not per record.
        if nJSON > 0 { parsedJSON.add(nJSON) }
        if nLogfmt > 0 { parsedLogfmt.add(nLogfmt) }
        if nNone > 0 { notParsed.add(nNone) }
    }

    /// Tries each format in order; on success `out` holds the members (at least one) and the format
    /// is returned.
    func lift(_ message: UnsafeRawBufferPointer, into out: inout [UInt8], logfmt: inout LogfmtScratch) -> ParseFormat? {
        for format in formats {
            switch format {
            case .json:
                // Cheap rejection: most plain-text lines never reach the JSON scanner.
                guard let first = message.first(where: { !isJSONSpace($0) }), first == UInt8(ascii: "{") else { continue }
                if let n = JSONScan.liftObject(message, into: &out, renameKey: isReserved) {
                    // `{}` has nothing to lift: keep the message rather than leave an empty record.
                    if n > 0 { return .json }
                    out.removeAll(keepingCapacity: true)
                }
            case .logfmt:
                if Logfmt.lift(message, into: &out, scratch: &logfmt, renameKey: isReserved) != nil {
                    return .logfmt
                }
            }
        }
        return nil
    }

    /// Appends the record's new fields to the arena and returns their range. Fields the record
    /// already had are kept in front, so the range stays one contiguous run of members.
    func commit(_ lifted: [UInt8], after old: Range<Int>, in bytes: inout [UInt8]) -> Range<Int> {
        var start = bytes.count
        if !old.isEmpty {
            if old.upperBound == bytes.count {
                // The old fields end the arena (usually a filter just before this one): extend in place.
                start = old.lowerBound
            } else {
                // Copy them to the end through the arena's own buffer; appending a slice of the array
                // to itself would copy the whole arena.
                let n = old.count
                bytes.append(contentsOf: repeatElement(0, count: n))
                bytes.withUnsafeMutableBytes { all in
                    UnsafeMutableRawBufferPointer(rebasing: all[start..<(start + n)])
                        .copyMemory(from: UnsafeRawBufferPointer(rebasing: all[old]))
                }
            }
            bytes.append(UInt8(ascii: ","))
        }
        if let targetPrefix { bytes.append(contentsOf: targetPrefix) }
        bytes.append(contentsOf: lifted)
        if targetPrefix != nil { bytes.append(UInt8(ascii: "}")) }
        return start..<bytes.count
    }

    func isReserved(_ key: UnsafeRawBufferPointer) -> Bool {
        for name in reserved where name.count == key.count {
            if name.withUnsafeBytes({ $0.elementsEqual(key) }) { return true }
        }
        return false
    }

    @inline(__always) func isJSONSpace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D }
}

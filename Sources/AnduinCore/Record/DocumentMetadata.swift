/// The source-position fields `RecordEncoder` writes into every document. By default only
/// `log.file.path`, as Vector's file source does (Fluent Bit adds none): `log.offset` and `event.id`
/// are numbers that change on every line, so gzip cannot shrink them and they cost the most CPU and
/// bytes per record. Turning one on or off never changes delivery: the Elasticsearch `_id` and the
/// disk ring's record headers keep the source identity and offset either way. `event.id` lets an
/// HTTP destination drop replays.
public struct DocumentMetadata: Sendable, Equatable {
    /// `log.file.path`.
    public var filePath = true
    /// `log.offset`.
    public var offset = false
    /// `event.id` (32 hex digits of source identity and offset).
    public var eventID = false

    public init() {}

    public init(filePath: Bool, offset: Bool, eventID: Bool) {
        self.filePath = filePath
        self.offset = offset
        self.eventID = eventID
    }

    public static let all = DocumentMetadata(filePath: true, offset: true, eventID: true)
}

/// The `metadata:` group every output has, declared once.
public extension DocumentMetadata {
    static let table = OptionTable(DocumentMetadata()) { d in [
        .key(.bool("file_path", default: d.filePath, "`log.file.path`: the path the line was read from"), \.filePath),
        .key(.bool("offset", default: d.offset, "`log.offset`: the line's byte offset in that file"), \.offset),
        .key(.bool("event_id", default: d.eventID, "`event.id`: source identity and offset, for a destination that drops replays; Elasticsearch's `_id` is computed from them either way"), \.eventID),
    ]}
    static let group = ConfigGroup("metadata", "source-position fields written into every document; each costs bytes per record (see *Performance*)",
                                   defaultText: "`file_path` only", table.options)

    /// The `metadata:` row of an output's table.
    static func row<C: Sendable>(_ field: WritableKeyPath<C, DocumentMetadata> & Sendable) -> OptionTable<C>.Row {
        .group(group, table, field)
    }

    /// Reads `metadata:` from the options of an output without a table row for it (the shared ones).
    static func read(_ r: ConfigReader) -> DocumentMetadata {
        var m = DocumentMetadata()
        if let g = r.group(group) { table.read(g, into: &m) }
        return m
    }
}

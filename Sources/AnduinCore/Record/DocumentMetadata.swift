/// The source-position fields `RecordEncoder` writes into every document. All on by default: they
/// say where a line came from and make replays exact. Turning one off saves its bytes in every
/// document (and in the gzip work on them); it never changes delivery: the Elasticsearch `_id`
/// and the disk ring's record headers keep the source identity and offset either way.
public struct DocumentMetadata: Sendable, Equatable {
    /// `log.file.path`.
    public var filePath = true
    /// `log.offset`.
    public var offset = true
    /// `event.id` (32 hex digits of source identity and offset).
    public var eventID = true

    public init() {}
    public static let all = DocumentMetadata()
}

/// The `metadata:` group every output has, declared once.
public extension DocumentMetadata {
    static let table = OptionTable(DocumentMetadata()) { d in [
        .key(.bool("file_path", default: d.filePath, "`log.file.path`: the path the line was read from"), \.filePath),
        .key(.bool("offset", default: d.offset, "`log.offset`: the line's byte offset in that file"), \.offset),
        .key(.bool("event_id", default: d.eventID, "`event.id`: source identity and offset; off, Elasticsearch's `_id` is still computed from them (replays stay exact)"), \.eventID),
    ]}
    static let group = ConfigGroup("metadata", "source-position fields written into every document; each costs bytes per record (see *Performance*)",
                                   defaultText: "all `true`", table.options)

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

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
public enum MetadataKeys {
    static let filePath = ConfigKey<Bool>.bool("file_path", default: true, "`log.file.path`: the path the line was read from")
    static let offset = ConfigKey<Bool>.bool("offset", default: true, "`log.offset`: the line's byte offset in that file")
    static let eventID = ConfigKey<Bool>.bool("event_id", default: true, "`event.id`: source identity and offset; off, Elasticsearch's `_id` is still computed from them (replays stay exact)")
    public static let group = ConfigGroup("metadata", "source-position fields written into every document; each costs bytes per record (see *Performance*)",
                                          defaultText: "all `true`", [filePath.spec, offset.spec, eventID.spec])

    /// Reads `metadata:` from an output's options.
    public static func parse(_ r: ConfigReader) -> DocumentMetadata {
        var m = DocumentMetadata()
        if let g = r.group(group) {
            m.filePath = g.get(filePath)
            m.offset = g.get(offset)
            m.eventID = g.get(eventID)
        }
        return m
    }
}

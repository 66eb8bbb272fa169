/// The source-position fields `RecordEncoder` writes into every document. By default only
/// `log.file.path`, as Vector's file source does (Fluent Bit adds none): `log.offset` and `event.id`
/// are numbers that change on every line, so gzip cannot shrink them and they cost the most CPU and
/// bytes per record. Turning one on or off never changes delivery: the Elasticsearch `_id` and the
/// disk ring's record headers keep the source identity and offset either way. `event.id` lets an
/// HTTP destination drop replays.
///
/// The `metadata:` group every output has is declared once, by these fields.
public struct DocumentMetadata: SharedOptionGroup {
    @OptionField(.bool("file_path", "`log.file.path`: the path the line was read from"))
    public var filePath = true
    @OptionField(.bool("offset", "`log.offset`: the line's byte offset in that file"))
    public var offset = false
    @OptionField(.bool("event_id", "`event.id`: source identity and offset, for a destination that drops replays; Elasticsearch's `_id` is computed from them either way"))
    public var eventID = false

    public init() {}

    public init(filePath: Bool, offset: Bool, eventID: Bool) {
        self.filePath = filePath
        self.offset = offset
        self.eventID = eventID
    }

    public static let all = DocumentMetadata(filePath: true, offset: true, eventID: true)

    public static let table = OptionTable(fields: DocumentMetadata())
    public static let group = ConfigGroup("metadata", "source-position fields written into every document; each costs bytes per record (see *Performance*)",
                                          defaultText: "`file_path` only", table.options)

    /// The three choices as plain flags, read once per batch: the encoder tests them for every record.
    var fields: Fields { Fields(filePath: filePath, offset: offset, eventID: eventID) }

    struct Fields {
        let filePath: Bool
        let offset: Bool
        let eventID: Bool
    }
}

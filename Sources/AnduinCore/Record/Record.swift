/// Which container stream a line came from.
public enum LogStream: UInt8, Sendable {
    case none = 0
    case stdout = 1
    case stderr = 2

    /// The JSON value written for `stream`, as bytes (no allocation per record).
    @inlinable
    public var jsonName: StaticString {
        switch self {
        case .none: return ""
        case .stdout: return "stdout"
        case .stderr: return "stderr"
        }
    }
}

/// Per-record flags, a bit set so a record stays a small value type.
public struct RecordFlags: OptionSet, Sendable {
    public let rawValue: UInt8
    @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// The line or merged record was longer than `max_line_bytes` and was cut.
    public static let truncated = RecordFlags(rawValue: 1 << 0)
    /// A filter lifted the message into fields; `message` is not written.
    public static let messageLifted = RecordFlags(rawValue: 1 << 1)
}

/// One log record. It owns no memory: its bytes live in the `RecordBatch` arena, so a batch of
/// thousands of records costs two allocations, not thousands.
///
/// Invariant: `message` and `fields` are ranges inside the owning batch's `bytes`.
/// `fields` holds JSON object *members* without braces (`"a":1,"b":"x"`), already valid JSON, or is empty.
public struct Record: Sendable {
    /// Nanoseconds since the Unix epoch (from the container runtime's timestamp when there is one).
    public var timestamp: Int64
    /// Offset in the source file of the first byte of this record (its first part, when merged).
    public var offset: Int64
    public var message: Range<Int>
    public var fields: Range<Int>
    public var stream: LogStream
    public var flags: RecordFlags

    @inlinable
    public init(timestamp: Int64, offset: Int64, message: Range<Int>, fields: Range<Int> = 0..<0,
                stream: LogStream, flags: RecordFlags = []) {
        self.timestamp = timestamp
        self.offset = offset
        self.message = message
        self.fields = fields
        self.stream = stream
        self.flags = flags
    }
}

/// Where records came from. Immutable and shared by every batch of one file (a class, so a batch
/// carries one pointer instead of copying the path).
public final class SourceInfo: Sendable {
    /// The path the file was discovered at (for a Kubernetes node, the /var/log/containers symlink).
    public let path: String
    /// `path` pre-rendered as a JSON string literal, quotes included, written as-is into every record.
    public let pathJSON: [UInt8]
    /// Stable identity of the file's content: hash of device, inode and the fingerprint of its first
    /// bytes. With the offset it forms `event.id`, the same for the same line however often it is re-read.
    public let sourceID: UInt64

    public init(path: String, sourceID: UInt64) {
        self.path = path
        var w = JSONWriter()
        w.writeString(Array(path.utf8))
        self.pathJSON = w.bytes
        self.sourceID = sourceID
    }
}

/// A batch of records from one source, handed between stages as one unit.
///
/// Ownership: a batch is a value; the stage that holds it may mutate it (copy-on-write protects the
/// others when a batch fans out to several consumers).
public struct RecordBatch: Sendable {
    public var source: SourceInfo
    public var records: [Record]
    /// The arena holding every record's message and fields bytes.
    public var bytes: [UInt8]
    /// JSON object members added to every record of the batch (for example the `kubernetes` object,
    /// which is the same for every line of one container). Empty or valid members.
    public var sharedFields: [UInt8]
    /// Input component that produced the batch (for logs and metrics).
    public var inputName: String

    public init(source: SourceInfo, inputName: String, recordCapacity: Int = 0, byteCapacity: Int = 0) {
        self.source = source
        self.inputName = inputName
        self.records = []
        self.bytes = []
        self.sharedFields = []
        if recordCapacity > 0 { records.reserveCapacity(recordCapacity) }
        if byteCapacity > 0 { bytes.reserveCapacity(byteCapacity) }
    }

    @inlinable public var count: Int { records.count }
    @inlinable public var isEmpty: Bool { records.isEmpty }

    /// Gives back the arena's and the record array's unused capacity when more than a quarter is
    /// unused. A batch is sized for a whole read (every byte, 1,024 records) and may then wait in a
    /// buffer for a long time: a 256 KiB read of docker lines fills ~56% of its arena and grows the
    /// record array to 2,048 slots for ~1,370 records.
    public mutating func compact() {
        if records.capacity - records.count > records.count / 4 + 16 {
            records = Array(unsafeUninitializedCapacity: records.count) { buf, n in
                n = buf.initialize(fromContentsOf: records)
            }
        }
        if bytes.capacity - bytes.count > bytes.count / 4 + 256 {
            bytes = Array(unsafeUninitializedCapacity: bytes.count) { buf, n in
                n = buf.initialize(fromContentsOf: bytes)
            }
        }
    }

    /// Appends bytes to the arena and returns their range.
    @inlinable
    public mutating func append(bytes src: UnsafeRawBufferPointer) -> Range<Int> {
        let start = bytes.count
        bytes.append(contentsOf: src)
        return start..<bytes.count
    }

    /// Appends an `event.id`: 16 hex digits of `sourceID`, then 16 of `offset`. Built on the stack
    /// and appended at once: a byte-at-a-time append costs a uniqueness and capacity check per byte,
    /// on every record.
    @inlinable
    public static func appendEventID(sourceID: UInt64, offset: Int64, to out: inout [UInt8]) {
        let digits: StaticString = "0123456789abcdef"
        var tmp: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        withUnsafeMutableBytes(of: &tmp) { b in
            digits.withUTF8Buffer { d in
                let offsetBits = UInt64(bitPattern: offset)
                for k in 0..<16 {
                    let shift = UInt64(60 - 4 * k)
                    b[k] = d[Int((sourceID >> shift) & 0xf)]
                    b[16 + k] = d[Int((offsetBits >> shift) & 0xf)]
                }
            }
            out.append(contentsOf: UnsafeRawBufferPointer(b))
        }
    }
}

/// Records already serialised as JSON documents: what buffers store and network outputs send.
///
/// Invariant: every `EncodedRecord.document` is a range of `documents` holding one complete JSON
/// object (no newline).
public struct EncodedRecord: Sendable, Equatable {
    public var document: Range<Int>
    /// Nanoseconds since the epoch (for index names such as `logs-%Y.%m.%d`).
    public var timestamp: Int64
    /// Source identity and offset: `event.id` is their 32 hex digits (the Elasticsearch `_id`).
    public var sourceID: UInt64
    public var offset: Int64

    public init(document: Range<Int>, timestamp: Int64, sourceID: UInt64, offset: Int64) {
        self.document = document
        self.timestamp = timestamp
        self.sourceID = sourceID
        self.offset = offset
    }

    /// Appends the 32 hex digits of `event.id`.
    public func appendEventID(to out: inout [UInt8]) {
        RecordBatch.appendEventID(sourceID: sourceID, offset: offset, to: &out)
    }
}

/// Invariant: the `append` methods write a newline after each document (outside its range), so a
/// batch built by them is its own NDJSON body (`withNDJSON`): the HTTP output sends it without
/// copying it first (a copy of the whole body per delivery thread). Batches read back from the
/// disk ring interleave frame headers instead.
public struct EncodedBatch: Sendable {
    public var documents: [UInt8] = []
    public var records: [EncodedRecord] = []

    public init() {}

    public var count: Int { records.count }
    public var isEmpty: Bool { records.isEmpty }

    /// Serialises every record of `batch` and appends it.
    public mutating func append(_ batch: RecordBatch, metadata: DocumentMetadata = .all) {
        records.reserveCapacity(records.count + batch.count)
        let fields = metadata.fields
        for i in batch.records.indices {
            let start = documents.count
            RecordEncoder.append(batch, i, fields, to: &documents)
            let r = batch.records[i]
            records.append(EncodedRecord(document: start..<documents.count, timestamp: r.timestamp,
                                         sourceID: batch.source.sourceID, offset: r.offset))
            documents.append(UInt8(ascii: "\n"))
        }
    }

    /// Appends one record whose document bytes come from elsewhere (a buffer being read back).
    public mutating func append(document: UnsafeRawBufferPointer, timestamp: Int64, sourceID: UInt64, offset: Int64) {
        let start = documents.count
        documents.append(contentsOf: document)
        records.append(EncodedRecord(document: start..<documents.count, timestamp: timestamp,
                                     sourceID: sourceID, offset: offset))
        documents.append(UInt8(ascii: "\n"))
    }

    /// Appends every record of `other`, rebasing its document ranges.
    public mutating func append(contentsOf other: EncodedBatch) {
        let base = documents.count
        documents.append(contentsOf: other.documents)
        records.reserveCapacity(records.count + other.records.count)
        for var r in other.records {
            r.document = (r.document.lowerBound + base)..<(r.document.upperBound + base)
            records.append(r)
        }
    }

    /// Calls `body` with the batch as NDJSON (every document and its newline, in order) when
    /// `documents` holds exactly that; nil otherwise (the caller builds the body itself).
    public func withNDJSON<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R? {
        try documents.withUnsafeBytes { all -> R? in
            var next = 0
            for r in records {
                guard r.document.lowerBound == next, r.document.upperBound < all.count,
                      all[r.document.upperBound] == UInt8(ascii: "\n") else { return nil }
                next = r.document.upperBound + 1
            }
            guard next == all.count else { return nil }
            return try body(all)
        }
    }

    public func withDocument<R>(_ i: Int, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try documents.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[records[i].document])) }
    }
}

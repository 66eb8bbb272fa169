/// Writes records as JSON documents (one object, no newline), the shape every output sends:
///
///     {"@timestamp":"…","stream":"stdout","message":"…",<lifted fields>,<shared fields>,
///      "log":{"file":{"path":"…"},"offset":N},"event":{"id":"…"}}
///
/// `message` is left out when a filter lifted it into fields; `stream` when the format has none;
/// `"truncated":true` is added under `log` when the line was cut. `metadata` leaves out
/// `log.file.path`, `log.offset` and `event.id` (an empty `log` or `event` object is not written).
public enum RecordEncoder {
    /// Appends record `index` of `batch` to `out`.
    public static func append(_ batch: RecordBatch, _ index: Int, metadata: DocumentMetadata = .all,
                              to out: inout [UInt8]) {
        append(batch, index, metadata.fields, to: &out)
    }

    /// Appends record `index` of `batch` to `out`, with `metadata` read once for the batch.
    static func append(_ batch: RecordBatch, _ index: Int, _ metadata: DocumentMetadata.Fields, to out: inout [UInt8]) {
        let r = batch.records[index]
        put(#"{"@timestamp":""#, &out)
        Timestamp.appendRFC3339Nano(r.timestamp, to: &out)
        out.append(UInt8(ascii: "\""))
        if r.stream != .none {
            put(#","stream":""#, &out)
            r.stream.jsonName.withUTF8Buffer { out.append(contentsOf: $0) }
            out.append(UInt8(ascii: "\""))
        }
        batch.bytes.withUnsafeBytes { arena in
            if !r.flags.contains(.messageLifted) {
                put(#","message":""#, &out)
                JSONWriter.appendEscaped(UnsafeRawBufferPointer(rebasing: arena[r.message]), to: &out)
                out.append(UInt8(ascii: "\""))
            }
            if !r.fields.isEmpty {
                out.append(UInt8(ascii: ","))
                out.append(contentsOf: UnsafeRawBufferPointer(rebasing: arena[r.fields]))
            }
        }
        if !batch.sharedFields.isEmpty {
            out.append(UInt8(ascii: ","))
            out.append(contentsOf: batch.sharedFields)
        }
        let truncated = r.flags.contains(.truncated)
        if metadata.filePath || metadata.offset || truncated {
            put(#","log":{"#, &out)
            var comma = false
            if metadata.filePath {
                put(#""file":{"path":"#, &out)
                out.append(contentsOf: batch.source.pathJSON)
                out.append(UInt8(ascii: "}"))
                comma = true
            }
            if metadata.offset {
                if comma { out.append(UInt8(ascii: ",")) }
                put(#""offset":"#, &out)
                JSONWriter.appendInt(r.offset, to: &out)
                comma = true
            }
            if truncated {
                if comma { out.append(UInt8(ascii: ",")) }
                put(#""truncated":true"#, &out)
            }
            out.append(UInt8(ascii: "}"))
        }
        if metadata.eventID {
            put(#","event":{"id":""#, &out)
            RecordBatch.appendEventID(sourceID: batch.source.sourceID, offset: r.offset, to: &out)
            put(#""}"#, &out)
        }
        out.append(UInt8(ascii: "}"))
    }

    /// A literal, copied from the binary's constant data (appending a `String`'s UTF-8 view goes
    /// through String's copy path, on every record).
    @inline(__always)
    static func put(_ s: StaticString, _ out: inout [UInt8]) {
        s.withUTF8Buffer { out.append(contentsOf: $0) }
    }

    /// About how many bytes `batch`'s documents take (a newline each included), for reserving a
    /// buffer once: growing it by doubling touched up to 3x the final size (old and new buffers
    /// during the copy), in every delivery thread. Errs low for messages that need escaping: the
    /// buffer then grows as before.
    public static func estimatedSize(_ batch: RecordBatch, metadata: DocumentMetadata = .all) -> Int {
        // `{"@timestamp":"…30…","stream":"stdout","message":"",` and braces, commas, newline.
        var perRecord = 80 + batch.sharedFields.count
        if metadata.filePath { perRecord += 24 + batch.source.pathJSON.count }
        if metadata.offset { perRecord += 30 }
        if metadata.eventID { perRecord += 48 }
        return batch.bytes.count + batch.count * perRecord
    }

    /// Appends every record of `batch` as newline-delimited JSON.
    public static func appendNDJSON(_ batch: RecordBatch, metadata: DocumentMetadata = .all, to out: inout [UInt8]) {
        let fields = metadata.fields
        for i in batch.records.indices {
            append(batch, i, fields, to: &out)
            out.append(UInt8(ascii: "\n"))
        }
    }
}

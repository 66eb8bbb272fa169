import AnduinCore
import Multiline

/// Entry point of the decoder fuzz targets (Tests/Fuzz): feeds `bytes`, split at "\n", to one
/// decoder and a `multiline:` joiner behind it (its mode chosen by the input's length), flushes
/// both, and checks what every record points at lies in the batch's arena.
public enum FuzzLines {
    public static func decode(_ bytes: UnsafeRawBufferPointer, format: LogFormat) {
        var decoder = LineDecoder(format: format, maxRecordBytes: 4096)
        var joiner = LineJoiner(MultilineSettings(mode: MultilineMode.allCases[bytes.count % 3], maxBytes: 256))
        var batch = RecordBatch(source: SourceInfo(path: "/fuzz.log", sourceID: 1), inputName: "fuzz")
        var start = 0
        var offset: Int64 = 0
        for i in 0...bytes.count where i == bytes.count || bytes[i] == 0x0A {
            let line = UnsafeRawBufferPointer(rebasing: bytes[start..<i])
            let before = batch.records.count
            decoder.decode(line: line, offset: offset, truncated: line.count > 2048, readTime: 1, into: &batch)
            joiner.join(&batch, from: before, now: Double(offset))
            offset += Int64(line.count + 1)
            start = i + 1
        }
        let before = batch.records.count
        decoder.flushPending(into: &batch)
        joiner.join(&batch, from: before, now: Double(offset))
        joiner.flush(into: &batch, now: Double(offset), all: true)
        precondition(joiner.openStart == nil, "a record left open after flushing all")
        var text: [UInt8] = []
        for r in batch.records {
            precondition(r.message.lowerBound >= 0 && r.message.upperBound <= batch.bytes.count, "record outside the arena")
            precondition(r.message.count <= 4096, "record above maxRecordBytes")
            // What later stages do with a record's time (any year the runtime wrote, clamped): format
            // it, and measure the delivery lag against the clock.
            text.removeAll(keepingCapacity: true)
            Timestamp.appendRFC3339Nano(r.timestamp, to: &text)
            precondition(text.count == 30, "timestamp text of \(text.count) bytes")
            _ = secondsBetween(r.timestamp, wallClockNanos())
            _ = secondsBetween(wallClockNanos(), r.timestamp)
        }
        _ = decoder.takeStats()
    }
}

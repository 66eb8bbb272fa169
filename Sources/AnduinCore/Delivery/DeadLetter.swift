import Foundation

/// Records a destination refused for good, kept in `data_dir/dead-letter/<output>.ndjson` so nothing
/// disappears silently: one JSON object a line with the time, output, HTTP status, reason and the
/// record itself. Shared by an output's delivery threads.
public final class DeadLetterFile: @unchecked Sendable {  // writes under `lock`
    public let path: String
    private let output: String
    private let lock = ConditionLock()
    private var fd: Int32 = -1
    private let counter: Counter

    public init(dataDirectory: String, output: String, stats: ComponentStats) {
        path = dataDirectory + "/dead-letter/" + output + ".ndjson"
        self.output = output
        counter = stats.counter("dead_lettered_records", "records the destination refused for good, written to the dead-letter file")
    }

    deinit { if fd >= 0 { close(fd) } }

    /// Appends the refused records. Returns false if the file cannot be written (the caller retries:
    /// a record is only dropped from the buffer once it is somewhere).
    public func write(_ batch: EncodedBatch, _ entries: [(index: Int, status: Int, reason: String)]) -> Bool {
        guard !entries.isEmpty else { return true }
        var out: [UInt8] = []
        let now = wallClockNanos()
        for e in entries {
            var w = JSONWriter()
            w.writeRaw(#"{"time":""#)
            Timestamp.appendRFC3339Nano(now, to: &w.bytes)
            w.writeRaw(#"","output":"#)
            w.writeString(output)
            w.writeRaw(#","status":"#)
            w.writeInt(Int64(e.status))
            w.writeRaw(#","reason":"#)
            w.writeString(e.reason)
            w.writeRaw(#","record":"#)
            batch.withDocument(e.index) { w.writeRaw($0) }
            w.writeRaw("}\n")
            out += w.bytes
        }
        return lock.withLock {
            if fd < 0 {
                try? FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent,
                                                         withIntermediateDirectories: true)
                fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
                if fd < 0 { return false }
            }
            guard out.withUnsafeBytes({ writeAll(fd: fd, $0) }) else { return false }
            counter.add(entries.count)
            return true
        }
    }
}

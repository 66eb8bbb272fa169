#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// Records a destination refused for good (or whose retry budget ran out), kept so nothing
/// disappears silently and a replay can re-submit them once the cause is fixed.
///
/// Layout: `data_dir/dead-letter/<output>/<sequence>.ndjson`, files mode 0600, the highest sequence
/// being written. One JSON object a line: `time`, `output`, `status`, `reason`, `attempts`,
/// `event_id`, `timestamp_ns` and the whole `record`. Bounded apart from the disk buffer: a file
/// rolls over at `max_bytes / max_files`, and when the store passes `max_bytes` or `max_files` the
/// oldest file is deleted and its records counted in `dead_letter_dropped_records`.
///
/// Shared by an output's delivery threads; the files' state is under a mutex.
public final class DeadLetterStore: Sendable {
    public let directory: String
    private let output: String
    private let written: Counter
    private let files: Mutex<Files>

    public init(dataDirectory: String, output: String, options: DeadLetterOptions, fsync: FsyncPolicy,
                stats: ComponentStats) {
        directory = DeadLetterStore.directory(dataDirectory: dataDirectory, output: output)
        self.output = output
        written = stats.counter("dead_lettered_records", "records the destination refused for good (or after the retry budget), written to the dead-letter store")
        var f = Files(directory: directory, maxBytes: options.maxBytes, maxFiles: options.maxFiles, fsync: fsync,
                      dropped: stats.counter("dead_letter_dropped_records", "dead letters deleted because the dead-letter store reached max_bytes or max_files"),
                      bytesGauge: stats.gauge("dead_letter_bytes", "bytes of the dead-letter store's files"))
        f.closed = DeadLetterStore.files(directory).map { ($0.seq, $0.bytes) }
        f.activeSeq = f.closed.last?.seq ?? 0
        f.bytesGauge.set(f.closed.reduce(0) { $0 + $1.bytes })
        files = Mutex(f)
    }

    deinit { files.withLock { if $0.fd >= 0 { close($0.fd) } } }

    public static func directory(dataDirectory: String, output: String) -> String {
        dataDirectory + "/dead-letter/" + output
    }

    static func fileName(_ seq: UInt64) -> String {
        let digits = String(seq)
        return String(repeating: "0", count: max(0, 16 - digits.count)) + digits + ".ndjson"
    }

    /// The store's files, oldest first.
    public static func files(_ directory: String) -> [(seq: UInt64, path: String, bytes: Int)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.compactMap { name -> (UInt64, String, Int)? in
            guard name.hasSuffix(".ndjson"), let seq = UInt64(name.dropLast(7)) else { return nil }
            let path = directory + "/" + name
            var st = stat()
            guard stat(path, &st) == 0 else { return nil }
            return (seq, path, Int(st.st_size))
        }.sorted { $0.0 < $1.0 }.map { (seq: $0.0, path: $0.1, bytes: $0.2) }
    }

    /// One refused record.
    public struct Entry {
        public var index: Int
        public var status: Int
        public var reason: String
        public var attempts: Int
        public init(index: Int, status: Int, reason: String, attempts: Int) {
            self.index = index
            self.status = status
            self.reason = reason
            self.attempts = attempts
        }
    }

    /// Appends the refused records of `batch`. Returns false if they cannot be written (the caller
    /// retries: a record leaves the buffer only once it is somewhere).
    public func write(_ batch: EncodedBatch, _ entries: [Entry]) -> Bool {
        guard !entries.isEmpty else { return true }
        var lines: [[UInt8]] = []
        lines.reserveCapacity(entries.count)
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
            w.writeRaw(#","attempts":"#)
            w.writeInt(Int64(e.attempts))
            w.writeRaw(#","event_id":""#)
            batch.records[e.index].appendEventID(to: &w.bytes)
            w.writeRaw(#"","timestamp_ns":"#)
            w.writeInt(batch.records[e.index].timestamp)
            w.writeRaw(#","record":"#)
            batch.withDocument(e.index) { w.writeRaw($0) }
            w.writeRaw("}\n")
            lines.append(w.bytes)
        }
        let n = lines.count
        let ok = files.withLock { $0.append(lines) }
        if ok { written.add(n) }
        return ok
    }

    /// fsyncs what was written (at stop, and on the buffer's interval).
    public func sync() { files.withLock { $0.sync() } }

    /// The store's files on disk: which one is written, their sizes, and the bounds.
    private struct Files {
        let directory: String
        let maxBytes: Int
        let maxFiles: Int
        let fsync: FsyncPolicy
        let dropped: Counter
        let bytesGauge: Gauge
        var fd: Int32 = -1
        var activeSeq: UInt64 = 0
        var activeBytes = 0
        /// Closed files, oldest first, with their sizes.
        var closed: [(seq: UInt64, bytes: Int)] = []
        /// At the first open the newest file is continued if it has room; later a new one starts.
        var mayResume = true
        var lastSync = monotonicSeconds()
        var dirty = false

        init(directory: String, maxBytes: Int, maxFiles: Int, fsync: FsyncPolicy, dropped: Counter, bytesGauge: Gauge) {
            self.directory = directory
            self.maxBytes = maxBytes
            self.maxFiles = maxFiles
            self.fsync = fsync
            self.dropped = dropped
            self.bytesGauge = bytesGauge
        }

        var perFileBytes: Int { max(1 << 16, maxBytes / maxFiles) }

        /// Line by line into files of at most `perFileBytes` (a lone larger line gets a file of its
        /// own), so the store stays within max_bytes whatever the size of one write.
        ///
        /// All or nothing: when a write fails (a full disk), every file this call wrote to is cut
        /// back to its size before it, so no record of the call stays in the store (the caller sends
        /// them again, and a record delivered later must not also be a dead letter) and no torn line
        /// is left.
        mutating func append(_ lines: [[UInt8]]) -> Bool {
            var chunk: [UInt8] = []
            var before: [(seq: UInt64, bytes: Int)] = []
            for line in lines {
                guard openActive() else { return undo(before) }
                if activeBytes + chunk.count > 0 && activeBytes + chunk.count + line.count > perFileBytes {
                    guard flush(&chunk, noting: &before) else { return undo(before) }
                    if activeBytes > 0 {
                        rollOver()
                        guard openActive() else { return undo(before) }
                    }
                }
                chunk += line
            }
            guard flush(&chunk, noting: &before) else { return undo(before) }
            switch fsync {
            case .always: sync()
            case .interval(let s) where monotonicSeconds() - lastSync >= s: sync()
            default: break
            }
            if activeBytes >= perFileBytes { rollOver() }
            enforceBound()
            return true
        }

        /// Writes `chunk` to the active file; `before` gets the file's size first, the first time.
        mutating func flush(_ chunk: inout [UInt8], noting before: inout [(seq: UInt64, bytes: Int)]) -> Bool {
            guard !chunk.isEmpty else { return true }
            enforceBound(reserve: chunk.count)  // make room first: the store never passes its bounds
            if before.last?.seq != activeSeq { before.append((activeSeq, activeBytes)) }
            guard chunk.withUnsafeBytes({ writeAll(fd: fd, $0) }) else { return false }
            activeBytes += chunk.count
            dirty = true
            chunk.removeAll(keepingCapacity: true)
            return true
        }

        /// Cuts the files an `append` wrote to back to their sizes before it. Returns false.
        mutating func undo(_ before: [(seq: UInt64, bytes: Int)]) -> Bool {
            for b in before {
                if b.seq == activeSeq && fd >= 0 {
                    _ = ftruncate(fd, off_t(b.bytes))
                    activeBytes = b.bytes
                } else if let i = closed.firstIndex(where: { $0.seq == b.seq }) {
                    let path = directory + "/" + DeadLetterStore.fileName(b.seq)
                    if b.bytes == 0 {
                        if unlink(path) == 0 || errno == ENOENT { closed.remove(at: i) }
                    } else if truncate(path, off_t(b.bytes)) == 0 {
                        closed[i].bytes = b.bytes
                    }
                }
            }
            return false
        }

        mutating func sync() {
            if fd >= 0 && dirty { _ = Glibc.fsync(fd) }
            dirty = false
            lastSync = monotonicSeconds()
        }

        mutating func openActive() -> Bool {
            if fd >= 0 { return true }
            do {
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                        attributes: [.posixPermissions: 0o700])
            } catch {
                return false
            }
            if mayResume, let last = closed.last, last.bytes < perFileBytes {
                closed.removeLast()
                activeSeq = last.seq
                activeBytes = last.bytes
            } else {
                enforceBound(opening: true)  // room for one more file before it exists
                activeSeq += 1
                activeBytes = 0
            }
            fd = open(directory + "/" + DeadLetterStore.fileName(activeSeq), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
            if fd < 0 {
                closed.append((activeSeq, activeBytes))
                return false
            }
            mayResume = false
            fchmod(fd, 0o600)  // an existing file keeps its mode otherwise
            return true
        }

        mutating func rollOver() {
            sync()
            close(fd)
            fd = -1
            closed.append((activeSeq, activeBytes))
            activeBytes = 0
        }

        /// Deletes the oldest closed files while the store (plus `reserve` bytes about to be written
        /// to the active file, or a file about to be created when `opening`) is over its bounds,
        /// counting their records.
        mutating func enforceBound(reserve: Int = 0, opening: Bool = false) {
            var total = closed.reduce(0) { $0 + $1.bytes } + activeBytes + reserve
            let active = fd >= 0 || reserve > 0 || opening ? 1 : 0
            while !closed.isEmpty && (total > maxBytes || closed.count + active > maxFiles) {
                let oldest = closed.removeFirst()
                let path = directory + "/" + DeadLetterStore.fileName(oldest.seq)
                let lines = (FileManager.default.contents(atPath: path).map { $0.reduce(0) { $0 + ($1 == 0x0A ? 1 : 0) } }) ?? 0
                if unlink(path) == 0 || errno == ENOENT {
                    dropped.add(lines)
                    total -= oldest.bytes
                } else {
                    closed.insert(oldest, at: 0)
                    break
                }
            }
            bytesGauge.set(total - reserve)
        }
    }
}
